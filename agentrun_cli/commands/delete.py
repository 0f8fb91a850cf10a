"""`agentrun runs delete`: delete stored runs matching a filter, after a count and a confirmation."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_cli import output
from agentrun_cli.client import RunsClient
from agentrun_cli.commands.common import JsonOption, settings_of, usage_error
from agentrun_cli.commands.runs import runs_app
from agentrun_cli.errors import EXIT_USAGE, CliError, handle_errors
from agentrun_cli.filters import FilterValueError, build_filter


@runs_app.command("delete")
@handle_errors
def delete_runs(
    ctx: typer.Context,
    filter_expr: Annotated[str, typer.Option("--filter", help="Filter, as for `runs list`.")] = "",
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status.")] = None,
    user: Annotated[str | None, typer.Option(help="Only runs started by this user.")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every run you may delete (instead of a filter).")] = False,
    include_unfinished: Annotated[
        bool,
        typer.Option(
            "--include-unfinished",
            help="Also RUNNING and QUEUED runs (records of runs that will never finish; a live one is stored again).",
        ),
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count the matching runs.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete runs with their steps and tool calls (RUNNING and QUEUED runs are kept unless --include-unfinished).
    Asks first unless --yes."""
    try:
        expression = build_filter(filter_expr, agent=agent, status=status, user=user)
    except FilterValueError as exc:
        raise usage_error(exc) from None
    if not expression and not all_runs:
        raise CliError("name the runs to delete with --filter (or --agent/--status/--user), or pass --all", EXIT_USAGE)
    if expression and all_runs:
        raise CliError("--all deletes every run you may delete: leave out the filter options", EXIT_USAGE)
    request = runs_pb2.DeleteRunsRequest(filter=expression, match_all=all_runs, include_unfinished=include_unfinished)
    client = RunsClient(settings_of(ctx))
    try:
        if dry_run or not yes:
            counting = runs_pb2.DeleteRunsRequest()
            counting.CopyFrom(request)
            counting.dry_run = True
            count = client.delete_runs(counting)
            if dry_run or count.run_count == 0:
                _report(count, as_json, dry_run=True)
                return
            _confirm(count)
        deleted = client.delete_runs(request)
    finally:
        client.close()
    _report(deleted, as_json, dry_run=False)


def _confirm(count: runs_pb2.DeleteRunsResponse) -> None:
    if not sys.stdin.isatty():
        raise CliError(
            f"{count.run_count} runs match; add --yes to delete them (or --dry-run to only count)", EXIT_USAGE
        )
    sample = ", ".join(count.sample_run_ids[:3])
    question = f"Delete {count.run_count} runs (e.g. {sample}) with their steps and tool calls?"
    if not typer.confirm(question, default=False, err=True):
        raise CliError("nothing deleted", EXIT_USAGE)


def _report(response: runs_pb2.DeleteRunsResponse, as_json: bool, *, dry_run: bool) -> None:
    if as_json:
        output.print_json(
            {
                "runCount": response.run_count,
                "dryRun": dry_run,
                "sampleRunIds": list(response.sample_run_ids),
                "unfinishedCount": response.unfinished_count,
            }
        )
        return
    kept = (
        f"; {response.unfinished_count} matching runs have not finished and are kept (--include-unfinished deletes "
        "them too)"
        if response.unfinished_count
        else ""
    )
    if dry_run:
        sample = f"; the oldest: {', '.join(response.sample_run_ids)}" if response.sample_run_ids else ""
        output.print_line(f"{response.run_count} runs match{sample}{kept}")
    else:
        output.print_line(f"deleted {response.run_count} runs{kept}")
