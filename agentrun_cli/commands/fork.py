"""`agentrun runs fork RUN_ID --from N`: a new run that replays a run up to step N, then goes on live with the
overrides given (model, generation config, task, tool results), streamed like `agentrun run`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2

from agentrun_cli.client import ExecutionClient, RunsClient
from agentrun_cli.commands.common import JsonOption, settings_of, usage_error
from agentrun_cli.commands.run import detach_stream, follow_run
from agentrun_cli.commands.runs import runs_app
from agentrun_cli.errors import handle_errors
from agentrun_cli.params import ParamError, parse_pairs
from agentrun_cli.run_ids import resolve_run_id


def tool_results(values: list[str] | None) -> dict[str, str]:
    """["CALL_ID=FILE", ...] -> {call id: the file's text} ("-" reads standard input)."""
    results: dict[str, str] = {}
    for call_id, name in parse_pairs(values, "--set-tool-result").items():
        if name == "-":
            results[call_id] = typer.get_text_stream("stdin").read()
            continue
        try:
            results[call_id] = Path(name).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ParamError(f"--set-tool-result {call_id}: cannot read {name!r}: {exc}") from None
    return results


def generation_config(value: str | None) -> str:
    if not value:
        return ""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ParamError(f"--config expects a JSON object such as '{{\"temperature\": 0.2}}': {exc}") from None
    if not isinstance(parsed, dict):
        raise ParamError("--config expects a JSON object such as '{\"temperature\": 0.2}'")
    return value


@runs_app.command("fork")
@handle_errors
def fork_command(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="The run to fork: its id, or a unique part of one.")],
    from_sequence: Annotated[
        int, typer.Option("--from", help="Replay the run's steps 1..N (see `agentrun runs show`), then go on live.")
    ],
    model: Annotated[str | None, typer.Option(help="The model of the live part (default: the run's).")] = None,
    task: Annotated[str | None, typer.Option(help="A new task: the prompt the live model calls see.")] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help='Generation config merged over the agent\'s, as JSON: {"temperature": 0}'),
    ] = None,
    set_tool_result: Annotated[
        list[str] | None,
        typer.Option(
            "--set-tool-result",
            help="CALL_ID=FILE: the model receives FILE's text as that tool call's result (repeatable; - is stdin).",
        ),
    ] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Print the new run's id once started and exit.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Fork a finished run from one of its steps: nothing before it is asked of the model or the tools again."""
    try:
        overrides = ex_pb2.ForkOverrides(
            model=model or "",
            task=task or "",
            generation_config_json=generation_config(config),
            tool_results=tool_results(set_tool_result),
        )
    except ParamError as exc:
        raise usage_error(exc) from None
    settings = settings_of(ctx)
    runs = RunsClient(settings)
    try:
        resolved = resolve_run_id(runs, run_id)
    finally:
        runs.close()
    request = ex_pb2.ForkRunRequest(run_id=resolved, from_sequence=from_sequence, overrides=overrides, detach=detach)
    client = ExecutionClient(settings)
    try:
        events = client.fork(request)
        code = detach_stream(events, as_json=as_json) if detach else follow_run(client, events, as_json=as_json)
    finally:
        client.close()
    raise typer.Exit(code)
