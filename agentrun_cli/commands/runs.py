"""`agentrun runs list|show|cancel|watch`: read stored runs and act on live ones."""

from __future__ import annotations

import sys
from typing import Annotated

import grpc
import typer
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_cli import output
from agentrun_cli.client import ExecutionClient, RunsClient
from agentrun_cli.commands.common import JsonOption, settings_of, usage_error
from agentrun_cli.commands.run import exit_code_for_run
from agentrun_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CliError, ServiceError, handle_errors
from agentrun_cli.filters import FilterValueError, build_filter
from agentrun_cli.progress import RunProgress, StreamEvent
from agentrun_cli.render.run_details import run_details
from agentrun_cli.render.run_list import runs_table
from agentrun_cli.run_ids import resolve_run_id
from agentrun_cli.streaming import BackgroundStream, follow, reattach_command, reattach_when_lost
from agentrun_cli.views import choose_view

runs_app = typer.Typer(help="Query stored runs, cancel or watch live ones.", no_args_is_help=True)

DEFAULT_LIMIT = 20
RunIdArgument = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        help="The run id, or any unique prefix or suffix of it (such as the shortened ids `runs list` prints).",
    ),
]


def _whole_id(ctx: typer.Context, run_id: str) -> str:
    """The whole id `run_id` names (asking RunsService when it is a part of one)."""
    client = RunsClient(settings_of(ctx))
    try:
        return resolve_run_id(client, run_id)
    finally:
        client.close()


def list_request(
    filter_expr: str,
    agent: str | None,
    status: str | None,
    user: str | None,
    order_by: str | None,
    limit: int,
    page_token: str | None,
    *,
    session: str | None = None,
    parent: str | None = None,
    root: str | None = None,
    top_level: bool = False,
) -> runs_pb2.ListRunsRequest:
    try:
        expression = build_filter(
            filter_expr,
            agent=agent,
            status=status,
            user=user,
            session=session,
            parent=parent,
            root=root,
            top_level=top_level,
        )
    except FilterValueError as exc:
        raise usage_error(exc) from None
    if limit < 1:
        raise CliError(f"--limit must be at least 1 (runs per page; default {DEFAULT_LIMIT}), got {limit}", EXIT_USAGE)
    return runs_pb2.ListRunsRequest(
        filter=expression,
        order_by=order_by or "",
        page_size=limit,
        page_token=page_token or "",
        view=runs_pb2.RUN_VIEW_BASIC,
    )


def fetch_runs(client: RunsClient, request: runs_pb2.ListRunsRequest, *, all_pages: bool) -> runs_pb2.ListRunsResponse:
    """One page, or every page from `request`'s on (the last response's token is then empty)."""
    response = client.list_runs(request)
    if not all_pages:
        return response
    merged = runs_pb2.ListRunsResponse(runs=response.runs)
    while response.next_page_token:
        page = runs_pb2.ListRunsRequest()
        page.CopyFrom(request)
        page.page_token = response.next_page_token
        response = client.list_runs(page)
        merged.runs.extend(response.runs)
    return merged


@runs_app.command("list")
@handle_errors
def list_runs(
    ctx: typer.Context,
    filter_expr: Annotated[
        str, typer.Option("--filter", help="Filter, e.g. 'status = FAILED AND start_time > \"2026-11-01T00:00:00Z\"'.")
    ] = "",
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    status: Annotated[str | None, typer.Option(help="Only this status (completed, failed, cancelled, ...).")] = None,
    user: Annotated[str | None, typer.Option(help="Only runs started by this user.")] = None,
    session: Annotated[str | None, typer.Option("--session", help="Only runs of this session.")] = None,
    parent: Annotated[
        str | None,
        typer.Option("--parent", help="Only the child runs (sub-agents) of this run (its id, or a unique part of it)."),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option("--root", help="Only the runs under this top-level run (its id, or a unique part of it)."),
    ] = None,
    top_level: Annotated[bool, typer.Option("--top-level", help="Only top-level runs (no sub-agent runs).")] = False,
    order_by: Annotated[
        str | None, typer.Option("--order-by", help='"start_time desc" (default), duration, total_tokens or cost.')
    ] = None,
    limit: Annotated[int, typer.Option(help="Runs per page (at least 1).")] = DEFAULT_LIMIT,
    page_token: Annotated[str | None, typer.Option("--page-token", help="Continue from a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first."""
    client = RunsClient(settings_of(ctx))
    try:
        request = list_request(
            filter_expr,
            agent,
            status,
            user,
            order_by,
            limit,
            page_token,
            session=session,
            parent=resolve_run_id(client, parent) if parent else None,
            root=resolve_run_id(client, root) if root else None,
            top_level=top_level,
        )
        response = fetch_runs(client, request, all_pages=all_pages)
    finally:
        client.close()
    if as_json:
        output.print_json(response)
        return
    console = output.console()
    if not response.runs:
        console.print("no runs match", style="dim")
    else:
        console.print(runs_table(response.runs))
    if response.next_page_token:
        console.print(f"more runs: add --page-token {response.next_page_token} (or --all)", style="dim", soft_wrap=True)


@runs_app.command("show")
@handle_errors
def show_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    as_json: JsonOption = False,
) -> None:
    """Everything about one run: tokens, cost, steps in order, tool calls, and its sub-agent runs."""
    client = RunsClient(settings_of(ctx))
    try:
        _print_stored_run(client, resolve_run_id(client, run_id), as_json=as_json)
    finally:
        client.close()


def _print_stored_run(client: RunsClient, run_id: str, *, as_json: bool) -> run_pb2.Run:
    """Prints the stored run `run_id` as `runs show` does (ServiceError NOT_FOUND when it is not stored); the run."""
    response = client.get_run(run_id, full=True, include_descendants=True)
    parent = _parent_of(client, response.run) if not as_json else None
    if as_json:
        # The run as before; its descendants (BASIC views) only when it has some.
        if response.descendants:
            output.print_json(
                {
                    **output.to_dict(response.run),
                    "descendants": [output.to_dict(d) for d in response.descendants],
                    "descendantsTruncated": response.descendants_truncated,
                }
            )
        else:
            output.print_json(response.run)
        return response.run
    output.console().print(
        run_details(response.run, response.descendants, truncated=response.descendants_truncated, parent=parent)
    )
    return response.run


def _parent_of(client: RunsClient, run: run_pb2.Run) -> run_pb2.Run | None:
    """The parent of a child run (BASIC view), or None for a top-level run or a parent not stored (yet)."""
    if not run.parent_run_id:
        return None
    try:
        return client.get_run(run.parent_run_id, full=False).run
    except ServiceError as exc:
        if exc.code is grpc.StatusCode.NOT_FOUND:
            return None
        raise


@runs_app.command("cancel")
@handle_errors
def cancel_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    after_turn: Annotated[
        bool, typer.Option("--after-turn", help="Let the current model turn and its tool calls finish first.")
    ] = False,
) -> None:
    """Cancel a live run (immediately, or after the current turn)."""
    run_id = _whole_id(ctx, run_id)
    client = ExecutionClient(settings_of(ctx))
    try:
        client.cancel_run(run_id, after_turn=after_turn)
    finally:
        client.close()
    mode = "after the current turn" if after_turn else "now"
    output.print_line(f"cancel requested: run {run_id} stops {mode}")


@runs_app.command("watch")
@handle_errors
def watch_run(
    ctx: typer.Context,
    run_id: RunIdArgument,
    from_sequence: Annotated[int, typer.Option("--from", help="Replay steps from this sequence number.")] = 0,
    from_run: Annotated[
        str,
        typer.Option(
            "--from-run",
            help="With --from: the run (this one, or a sub-agent's in its stream) whose step --from - 1 was the last "
            "received; the stream goes on just after it, nothing repeated.",
        ),
    ] = "",
    after: Annotated[
        list[str] | None,
        typer.Option(
            "--after",
            metavar="RUN_ID:SEQUENCE",
            help="The last step received of a run (this one, or a sub-agent's in its stream); repeat for each run. The "
            "stream goes on past them, nothing repeated, through any replica. Excludes --from and --from-run.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Follow a live run with the same view as `agentrun run`. Ctrl-C stops watching; the run goes on. A run that
    already finished (ExecutionService no longer follows it) is shown as `runs show` shows it."""
    if from_sequence < 0:
        raise CliError("--from must not be negative", EXIT_USAGE)
    last_received = _last_received(after or [])
    if last_received and (from_sequence or from_run):
        raise CliError("--after names where to go on by itself: leave out --from and --from-run", EXIT_USAGE)
    run_id = _whole_id(ctx, run_id)
    # The runs of --after as typed: whole ids, or parts of ids as `runs list` prints them, like the run's own.
    last_received = {_whole_id(ctx, run): sequence for run, sequence in last_received.items()}
    client = ExecutionClient(settings_of(ctx))
    progress = RunProgress(last_received=dict(last_received))
    try:
        stream: BackgroundStream[StreamEvent] = BackgroundStream(
            client.watch(run_id, from_sequence, from_run, last_received)
        )
        view = choose_view(as_json=as_json, console=output.console())
        with view, reattach_when_lost(progress):
            try:
                follow(stream, view, progress)
            except KeyboardInterrupt:
                stream.cancel()
                view.notice(f"stopped watching; run {run_id} goes on{_reattach_hint(run_id, progress)}")
                raise typer.Exit(EXIT_INTERRUPTED) from None
        view.summary(progress)
    except ServiceError as exc:
        if exc.code is not grpc.StatusCode.NOT_FOUND or progress.started is not None:
            raise
        # Not among the runs ExecutionService follows: a run that finished earlier is stored in RunsService.
        raise typer.Exit(_show_finished(ctx, run_id, exc, as_json=as_json)) from None
    finally:
        client.close()
    if progress.finished is None:
        raise CliError(f"the stream ended before the run finished; see `agentrun runs show {run_id}`")
    raise typer.Exit(exit_code_for_run(progress))


def _show_finished(ctx: typer.Context, run_id: str, not_live: ServiceError, *, as_json: bool) -> int:
    """`runs watch` of a run ExecutionService does not follow: the stored run, printed as `runs show` does, after a
    line saying it already finished; the exit code as for a watched run (0: completed). `not_live` when RunsService
    does not store it either."""
    runs = RunsClient(settings_of(ctx))
    try:
        try:
            run = runs.get_run(run_id, full=False).run
        except ServiceError as exc:
            if exc.code is grpc.StatusCode.NOT_FOUND:
                raise not_live from None
            raise
        status = run_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_")
        print(f"run {run_id} already finished ({status}); showing the stored run", file=sys.stderr)
        _print_stored_run(runs, run_id, as_json=as_json)
    finally:
        runs.close()
    return 0 if run.status == run_pb2.RUN_STATUS_COMPLETED else EXIT_FAILURE


def _last_received(pairs: list[str]) -> dict[str, int]:
    """--after RUN_ID:SEQUENCE values as WatchRun.last_received, the runs as typed (whole ids or parts of them)."""
    received: dict[str, int] = {}
    for pair in pairs:
        run, _, sequence = pair.rpartition(":")
        if not run or not sequence.isdigit():
            raise CliError(f"--after takes RUN_ID:SEQUENCE (a run id and a step's sequence), got {pair!r}", EXIT_USAGE)
        received[run] = int(sequence)
    return received


def _reattach_hint(run_id: str, progress: RunProgress) -> str:
    """How to watch again from just after the last step received (any depth), or "" before any step."""
    if not progress.last_received:
        return ""
    return f" (to go on after the last step received: {reattach_command(run_id, progress)})"
