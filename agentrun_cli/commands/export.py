"""`agentrun runs export`: stream matching runs to a file (jsonl, csv or parquet), resumable after an interruption."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from agentrun_cli.client import RunsClient
from agentrun_cli.commands.common import settings_of, usage_error
from agentrun_cli.commands.runs import runs_app
from agentrun_cli.errors import EXIT_USAGE, CliError, handle_errors
from agentrun_cli.export.runner import ExportJob, run_export
from agentrun_cli.export.state import ExportState, StateError, state_path
from agentrun_cli.filters import FilterValueError, build_filter


class Format(StrEnum):
    JSONL = "jsonl"
    CSV = "csv"
    PARQUET = "parquet"


class View(StrEnum):
    BASIC = "basic"
    FULL = "full"


def _resumed(output: Path | None, expression: str | None, fmt: Format | None, view: View | None) -> ExportState:
    if output is None:
        raise CliError("--resume needs --output FILE (the file the interrupted export was writing)", EXIT_USAGE)
    try:
        state = ExportState.load(output)
    except StateError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    for option, given, recorded in (
        ("--filter", expression, state.filter),
        ("--format", fmt and fmt.value, state.format),
        ("--view", view and view.value, state.view),
    ):
        if given is not None and given != recorded:
            raise CliError(
                f"{option} {given!r} differs from the interrupted export's ({recorded!r}); leave it out to resume, "
                f"or delete {state_path(output).name} to start a new export",
                EXIT_USAGE,
            )
    return state


@runs_app.command("export")
@handle_errors
def export_runs(
    ctx: typer.Context,
    filter_expr: Annotated[
        str | None, typer.Option("--filter", help="Filter, as for `runs list`; default: every run you may see.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    user: Annotated[str | None, typer.Option(help="Only runs started by this user.")] = None,
    fmt: Annotated[Format | None, typer.Option("--format", help="jsonl (default), csv or parquet.")] = None,
    view: Annotated[
        View | None, typer.Option("--view", help="basic (default) or full (with steps and tool calls).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="File to write (needed for parquet and --resume); default stdout."),
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted export of --output where it stopped.")
    ] = False,
) -> None:
    """Export runs in (start_time, id) order: jsonl, csv or parquet, with a progress bar on a terminal."""
    expression: str | None = None
    if filter_expr is not None or agent or status or user:
        try:
            expression = build_filter(filter_expr or "", agent=agent, status=status, user=user)
        except FilterValueError as exc:
            raise usage_error(exc) from None
    if resume:
        state = _resumed(output, expression, fmt, view)
    else:
        chosen = fmt or Format.JSONL
        if chosen is Format.PARQUET and output is None:
            raise CliError("--format parquet needs --output FILE", EXIT_USAGE)
        if output is not None and state_path(output).exists():
            raise CliError(
                f"{output} holds an interrupted export ({state_path(output).name}): add --resume to continue it, "
                "or delete both files to start over",
                EXIT_USAGE,
            )
        state = ExportState(filter=expression or "", view=(view or View.BASIC).value, format=chosen.value)
    job = ExportJob(state=state, output=output, show_progress=sys.stderr.isatty())
    client = RunsClient(settings_of(ctx))
    try:
        count = run_export(client, job)
    finally:
        client.close()
    where = str(output) if output is not None else "stdout"
    print(f"exported {count} runs to {where}", file=sys.stderr)
