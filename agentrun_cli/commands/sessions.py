"""`agentrun sessions list|show`: sessions (conversations) as RunsService records them."""

from __future__ import annotations

from typing import Annotated

import typer
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_cli import output
from agentrun_cli.client import RunsClient
from agentrun_cli.commands.common import JsonOption, settings_of, usage_error
from agentrun_cli.errors import EXIT_USAGE, CliError, handle_errors
from agentrun_cli.filters import FilterValueError, build_filter, quote
from agentrun_cli.render.sessions import session_details, sessions_table

sessions_app = typer.Typer(
    help="Sessions (conversations): their runs, tokens, cost and time span.", no_args_is_help=True
)

DEFAULT_LIMIT = 20


def list_sessions_request(
    filter_expr: str, agent: str | None, user: str | None, order_by: str | None, limit: int, page_token: str | None
) -> runs_pb2.ListSessionsRequest:
    try:
        expression = build_filter(filter_expr, agent=agent, user=user)
    except FilterValueError as exc:
        raise usage_error(exc) from None
    if limit < 1:
        raise CliError(
            f"--limit must be at least 1 (sessions per page; default {DEFAULT_LIMIT}), got {limit}", EXIT_USAGE
        )
    return runs_pb2.ListSessionsRequest(
        filter=expression, order_by=order_by or "", page_size=limit, page_token=page_token or ""
    )


def fetch_sessions(
    client: RunsClient, request: runs_pb2.ListSessionsRequest, *, all_pages: bool
) -> runs_pb2.ListSessionsResponse:
    response = client.list_sessions(request)
    if not all_pages:
        return response
    merged = runs_pb2.ListSessionsResponse(sessions=response.sessions)
    while response.next_page_token:
        page = runs_pb2.ListSessionsRequest()
        page.CopyFrom(request)
        page.page_token = response.next_page_token
        response = client.list_sessions(page)
        merged.sessions.extend(response.sessions)
    return merged


@sessions_app.command("list")
@handle_errors
def list_sessions(
    ctx: typer.Context,
    filter_expr: Annotated[
        str,
        typer.Option(
            "--filter", help="Sessions with a run matching this filter (runs list syntax), e.g. 'status = FAILED'."
        ),
    ] = "",
    agent: Annotated[str | None, typer.Option(help="Only sessions with a run of this agent.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's sessions.")] = None,
    order_by: Annotated[
        str | None,
        typer.Option("--order-by", help='"last_run_start_time desc" (default) or "start_time", asc or desc.'),
    ] = None,
    limit: Annotated[int, typer.Option(help="Sessions per page (at least 1).")] = DEFAULT_LIMIT,
    page_token: Annotated[str | None, typer.Option("--page-token", help="Continue from a previous page.")] = None,
    all_pages: Annotated[bool, typer.Option("--all", help="Fetch every page.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List sessions, most recently active first, with their runs' totals."""
    request = list_sessions_request(filter_expr, agent, user, order_by, limit, page_token)
    client = RunsClient(settings_of(ctx))
    try:
        response = fetch_sessions(client, request, all_pages=all_pages)
    finally:
        client.close()
    if as_json:
        output.print_json(response)
        return
    console = output.console()
    if not response.sessions:
        console.print("no sessions match", style="dim")
    else:
        console.print(sessions_table(response.sessions))
    if response.next_page_token:
        console.print(
            f"more sessions: add --page-token {response.next_page_token} (or --all)", style="dim", soft_wrap=True
        )


def _session_runs(client: RunsClient, session: runs_pb2.Session) -> list[run_pb2.Run]:
    """Every run of the session (sub-agent runs included), by start time."""
    request = runs_pb2.ListRunsRequest(
        filter=f"session_id = {quote(session.id)} AND user = {quote(session.user)}",
        order_by="start_time asc",
        page_size=1000,
        view=runs_pb2.RUN_VIEW_BASIC,
    )
    found: list[run_pb2.Run] = []
    while True:
        response = client.list_runs(request)
        found.extend(response.runs)
        if not response.next_page_token:
            return found
        request.page_token = response.next_page_token


@sessions_app.command("show")
@handle_errors
def show_session(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(metavar="SESSION_ID", help="The session id.")],
    user: Annotated[
        str | None, typer.Option(help="Whose session (needed when several users have one with this id).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """One session: its runs in order, tokens, cost and time span."""
    terms = [f"session_id = {quote(session_id)}"] + ([f"user = {quote(user)}"] if user else [])
    client = RunsClient(settings_of(ctx))
    try:
        found = fetch_sessions(
            client, runs_pb2.ListSessionsRequest(filter=" AND ".join(terms), page_size=1000), all_pages=True
        ).sessions
        if not found:
            whose = f" of user {user!r}" if user else ""
            raise CliError(f"NOT_FOUND: no session {session_id!r}{whose} (or none you may see)", EXIT_USAGE)
        if len(found) > 1:
            users = ", ".join(sorted(s.user for s in found))
            raise CliError(f"session {session_id!r} exists for several users ({users}): add --user", EXIT_USAGE)
        session = found[0]
        runs = _session_runs(client, session)
    finally:
        client.close()
    if as_json:
        output.print_json({"session": output.to_dict(session), "runs": [output.to_dict(r) for r in runs]})
        return
    output.console().print(session_details(session, runs))
