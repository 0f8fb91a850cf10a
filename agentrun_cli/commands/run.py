"""`agentrun run AGENT "task"`: start a run and follow it live; Ctrl-C cancels it."""

from __future__ import annotations

from typing import Annotated

import typer
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2

from agentrun_cli import output
from agentrun_cli.client import EventStream, ExecutionClient
from agentrun_cli.commands.common import JsonOption, settings_of, usage_error
from agentrun_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, CliError, handle_errors
from agentrun_cli.params import ParamError, parse_pairs
from agentrun_cli.progress import RunProgress, StreamEvent
from agentrun_cli.streaming import BackgroundStream, cancel_and_drain, follow, reattach_when_lost
from agentrun_cli.views import choose_view


def build_request(
    agent: str,
    task: str,
    variables: list[str] | None,
    labels: list[str] | None,
    model: str | None,
    detach: bool,
    run_id: str | None,
) -> ex_pb2.ExecuteAgentRequest:
    try:
        return ex_pb2.ExecuteAgentRequest(
            agent_name=agent,
            task=task,
            variables=parse_pairs(variables, "--var"),
            labels=parse_pairs(labels, "--label"),
            model=model or "",
            detach=detach,
            run_id=run_id or "",
        )
    except ParamError as exc:
        raise usage_error(exc) from None


def exit_code_for_run(progress: RunProgress) -> int:
    if progress.finished is None:
        return EXIT_FAILURE
    return 0 if progress.finished.status == run_pb2.RUN_STATUS_COMPLETED else EXIT_FAILURE


@handle_errors
def run_command(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="The agent's name (its .prompt file name).")],
    task: Annotated[str, typer.Argument(help="What to ask the agent.")],
    var: Annotated[list[str] | None, typer.Option("--var", help="Template variable KEY=VALUE (repeatable).")] = None,
    label: Annotated[list[str] | None, typer.Option("--label", help="Run label KEY=VALUE (repeatable).")] = None,
    model: Annotated[
        str | None, typer.Option(help='Model override, e.g. "test" (offline TestModel) or "gemini-2.5-flash".')
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the run id once started and exit; the run goes on.")
    ] = False,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Use this UUIDv7 (reattaches if it exists).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Run an agent and show every step as it happens. Ctrl-C cancels the run."""
    request = build_request(agent, task, var, label, model, detach, run_id)
    client = ExecutionClient(settings_of(ctx))
    try:
        code = _execute(client, request, as_json=as_json)
    finally:
        client.close()
    raise typer.Exit(code)


def _execute(client: ExecutionClient, request: ex_pb2.ExecuteAgentRequest, *, as_json: bool) -> int:
    if request.detach:
        return detach_stream(client.execute(request), as_json=as_json)
    return follow_run(client, client.execute(request), as_json=as_json)


def follow_run(client: ExecutionClient, events: EventStream[StreamEvent], *, as_json: bool) -> int:
    """Shows a run's stream (ExecuteAgent, ForkRun) until it finishes; Ctrl-C cancels the run. The exit code."""
    stream: BackgroundStream[StreamEvent] = BackgroundStream(events)
    progress = RunProgress()
    view = choose_view(as_json=as_json, console=output.console())
    cancelled = False
    with view, reattach_when_lost(progress):
        try:
            follow(stream, view, progress)
        except KeyboardInterrupt:
            cancelled = True
            cancel_and_drain(client, stream, view, progress)
    view.summary(progress)
    if cancelled:
        view.notice("cancelled")
        return EXIT_INTERRUPTED
    if progress.finished is None:
        raise CliError(
            "the stream ended before the run finished"
            + (f"; see `agentrun runs show {progress.run_id}`" if progress.run_id else "")
        )
    return exit_code_for_run(progress)


def detach_stream(stream: EventStream[StreamEvent], *, as_json: bool) -> int:
    """Waits for run_started (or run_queued: the run waits for a slot) only: prints the run id (or that event as
    JSON) and leaves the run going."""
    for event in stream:
        kind = event.WhichOneof("event")
        if kind in ("run_started", "run_queued"):
            run_id = event.run_started.run_id if kind == "run_started" else event.run_queued.run_id
            output.print_data_line(output.json_line(event) if as_json else run_id)
            stream.cancel()
            return 0
    raise CliError("the stream ended before the run started")
