"""`agentrun sessions list|show`: sessions with their totals, and one session's runs in order."""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt
from agentrun_cli.render.session_runs import SessionRunsTable


def span(session: runs_pb2.Session) -> str:
    """From the first run's start to the latest end (— while no run has ended)."""
    if not session.HasField("end_time") or not session.HasField("start_time"):
        return fmt.NONE
    seconds = fmt.seconds_between(session.start_time, session.end_time)
    return fmt.human_seconds(max(seconds, 0.0))


def _short_time(value: Timestamp) -> str:
    return fmt.to_datetime(value).strftime("%m-%d %H:%MZ")


def _runs_cell(session: runs_pb2.Session) -> str:
    if session.run_count == session.top_level_run_count:
        return fmt.count(session.run_count)
    return f"{fmt.count(session.top_level_run_count)} (+{fmt.count(session.run_count - session.top_level_run_count)})"


def sessions_table(sessions: Sequence[runs_pb2.Session]) -> Table:
    # Fixed-width figures never wrap; the session id, user and agents wrap when the terminal is narrow.
    # One blank between columns; the user column only when the sessions are several users' (an admin's view).
    table = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1, 0, 0), collapse_padding=False)
    several_users = len({session.user for session in sessions}) > 1
    table.add_column("session", style="cyan", overflow="fold", min_width=8)
    if several_users:
        table.add_column("user", overflow="fold", min_width=4)
    table.add_column("runs", justify="right", no_wrap=True)
    table.add_column("agents", min_width=6)
    table.add_column("last run", no_wrap=True)
    table.add_column("span", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for session in sessions:
        cells: list[str | Text] = [session.id, session.user or fmt.NONE] if several_users else [session.id]
        table.add_row(
            *cells,
            _runs_cell(session),
            ", ".join(session.agent_names),
            _short_time(session.last_run_start_time) if session.HasField("last_run_start_time") else fmt.NONE,
            span(session),
            fmt.count(fmt.total_tokens(session.token_usage)),
            fmt.group_cost(session),
            fmt.status_text(session.last_status) if session.last_status else Text(fmt.NONE),
        )
    table.caption = "runs: top-level (+ sub-agent runs); status: of the latest top-level run"
    return table


def session_header(session: runs_pb2.Session) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("session", Text(session.id, style="bold cyan"))
    grid.add_row("user", session.user or fmt.NONE)
    grid.add_row(
        "runs",
        f"{fmt.count(session.top_level_run_count)} top-level, {fmt.count(session.run_count)} with sub-agent runs",
    )
    grid.add_row("agents", ", ".join(session.agent_names) or fmt.NONE)
    grid.add_row("start", fmt.optional_timestamp(session, "start_time"))
    grid.add_row("end", fmt.optional_timestamp(session, "end_time"))
    grid.add_row("span", span(session))
    grid.add_row("tokens", fmt.tokens_brief(session.token_usage))
    grid.add_row(
        "cost",
        fmt.group_cost(session) if session.cost_by_currency or session.HasField("cost") else "unknown (no priced run)",
    )
    grid.add_row("last status", fmt.status_text(session.last_status) if session.last_status else Text(fmt.NONE))
    return grid


def session_details(session: runs_pb2.Session, runs: Sequence[run_pb2.Run]) -> RenderableType:
    return Group(session_header(session), Text(""), SessionRunsTable(session, runs))
