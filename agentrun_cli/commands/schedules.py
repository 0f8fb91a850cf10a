"""`agentrun schedules list|pause|resume`: the agents' scheduled runs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.text import Text

from agentrun_cli import output
from agentrun_cli.client import ExecutionClient
from agentrun_cli.commands.common import JsonOption, settings_of
from agentrun_cli.errors import EXIT_USAGE, CliError, handle_errors
from agentrun_cli.render.schedules import schedule_key, schedules_view, state_text

schedules_app = typer.Typer(
    help="Scheduled runs the agents declare (front matter schedule:): next fire times, pause, resume.",
    no_args_is_help=True,
)

TargetArgument = Annotated[
    str, typer.Argument(metavar="AGENT[/NAME]", help="An agent's schedule, or every schedule of the agent.")
]


def parse_target(target: str) -> tuple[str, str]:
    agent, _, name = target.partition("/")
    if not agent or "/" in name:
        raise CliError(f"{target!r} is not AGENT or AGENT/NAME (e.g. daily-report/morning)", EXIT_USAGE)
    return agent, name


@schedules_app.command("list")
@handle_errors
def list_schedules(
    ctx: typer.Context,
    agent: Annotated[str, typer.Option(help="Only this agent's schedules.")] = "",
    count: Annotated[
        int, typer.Option("--count", "-n", help="Next fire times shown per schedule.", min=1, max=100)
    ] = 3,
    as_json: JsonOption = False,
) -> None:
    """Every schedule with its state (active or paused), its next fire times and its last tick."""
    client = ExecutionClient(settings_of(ctx))
    try:
        response = client.list_schedules(agent, count)
    finally:
        client.close()
    if as_json:
        output.print_json(response)
        return
    output.console().print(schedules_view(response.schedules))


def _set_paused(ctx: typer.Context, target: str, *, paused: bool, as_json: bool) -> None:
    agent, name = parse_target(target)
    client = ExecutionClient(settings_of(ctx))
    try:
        schedules = client.set_schedule_paused(agent, name, paused=paused)
    finally:
        client.close()
    if as_json:
        output.print_json({"schedules": [output.to_dict(s) for s in schedules]})
        return
    for schedule in schedules:
        output.console().print(Text.assemble((schedule_key(schedule), "cyan"), ": ", state_text(schedule)))


@schedules_app.command("pause")
@handle_errors
def pause(ctx: typer.Context, target: TargetArgument, as_json: JsonOption = False) -> None:
    """Pause a schedule (or every schedule of an agent) on every replica until it is resumed."""
    _set_paused(ctx, target, paused=True, as_json=as_json)


@schedules_app.command("resume")
@handle_errors
def resume(ctx: typer.Context, target: TargetArgument, as_json: JsonOption = False) -> None:
    """Resume a paused schedule; ticks that passed while it was paused are not run."""
    _set_paused(ctx, target, paused=False, as_json=as_json)
