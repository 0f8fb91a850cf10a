"""`agentrun agents list`: what ExecutionService can run."""

from __future__ import annotations

import typer

from agentrun_cli import output
from agentrun_cli.client import ExecutionClient
from agentrun_cli.commands.common import JsonOption, settings_of
from agentrun_cli.errors import handle_errors
from agentrun_cli.render.agents import agents_view

agents_app = typer.Typer(help="The agents ExecutionService has loaded.", no_args_is_help=True)


@agents_app.command("list")
@handle_errors
def list_agents(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Name, model, tools, limits and version of every agent; files that failed to load in red."""
    client = ExecutionClient(settings_of(ctx))
    try:
        response = client.list_agents()
    finally:
        client.close()
    if as_json:
        output.print_json(response)
        return
    output.console().print(agents_view(response))
