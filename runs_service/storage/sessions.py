"""ListSessions: sessions paged by their first or latest run start, with their runs' totals.

Two steps in one snapshot:
1. the page: rows of the `sessions` table (kept in step with `runs` by database triggers, see tables.py) in keyset
   order over (time, session_id, user_name), on one of its indexes; a filter keeps the sessions with at least one
   run matching it (EXISTS over ix_runs_session_id_user_name_start_time);
2. the figures of the page's sessions, from their runs: counts, token and cost sums (costs per currency; each run
   once, so a sub-agent run is counted exactly once and a parent's own usage never includes its children's), agents,
   time span, and the latest top-level run's id and status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, exists, func, literal, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from agentrun_core.domain import RunStatus
from agentrun_core.echo import shown
from runs_service.errors import InvalidArgument, InvalidPageToken
from runs_service.queries import SessionOrderField, SessionOrdering, SessionSummary
from runs_service.storage.cost_sums import (
    GroupCosts,
    costs_by_currency,
    costs_from_row,
    mixes_currencies,
    single_currency_columns,
)
from runs_service.storage.rows import to_utc
from runs_service.storage.sums import summed_token_usage
from runs_service.storage.tables import TOKEN_COLUMNS, runs, sessions

_ALLOWED_TEXT = "last_run_start_time or start_time, optionally followed by asc or desc"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def parse_session_order_by(text: str) -> SessionOrdering:
    """`"start_time asc"` -> SessionOrdering(START_TIME, descending=False); empty -> last_run_start_time desc."""
    words = text.split()
    if not words:
        return SessionOrdering()
    if len(words) > 2:
        raise InvalidArgument("order_by", f"must be one field: {_ALLOWED_TEXT}; got {shown(text)}")
    try:
        field = SessionOrderField(words[0].lower())
    except ValueError:
        raise InvalidArgument("order_by", f"unknown field {shown(words[0])}: use {_ALLOWED_TEXT}") from None
    direction = words[1].lower() if len(words) == 2 else "desc"
    if direction not in ("asc", "desc"):
        raise InvalidArgument("order_by", f"direction must be asc or desc, got {shown(words[1])}")
    return SessionOrdering(field=field, descending=direction == "desc")


def session_ordering_text(ordering: SessionOrdering) -> str:
    return f"{ordering.field.value} {'desc' if ordering.descending else 'asc'}"


def _sort_column(ordering: SessionOrdering) -> ColumnElement[Any]:
    match ordering.field:
        case SessionOrderField.LAST_RUN_START_TIME:
            return sessions.c.last_run_start_time
        case SessionOrderField.START_TIME:
            return sessions.c.start_time


def _keyset(ordering: SessionOrdering) -> tuple[ColumnElement[Any], ...]:
    return (_sort_column(ordering), sessions.c.session_id, sessions.c.user_name)


def order_clauses(ordering: SessionOrdering) -> list[ColumnElement[Any]]:
    return [column.desc() if ordering.descending else column.asc() for column in _keyset(ordering)]


def position_of(ordering: SessionOrdering, row: Mapping[Any, Any]) -> dict[str, Any]:
    """The keyset position of a sessions row, JSON-ready for a page token."""
    value = to_utc(row[_sort_column(ordering).name])
    return {"v": (value - _EPOCH) // _MICROSECOND, "s": row["session_id"], "u": row["user_name"]}


def after_position(ordering: SessionOrdering, position: Mapping[str, Any]) -> ColumnElement[bool]:
    """Sessions strictly after `position` in `ordering`."""
    micros, session_id, user = position.get("v"), position.get("s"), position.get("u")
    if not isinstance(micros, int) or isinstance(micros, bool) or not isinstance(session_id, str):
        raise InvalidPageToken("is malformed; start again without it")
    if not isinstance(user, str):
        raise InvalidPageToken("is malformed; start again without it")
    column = _sort_column(ordering)
    value = literal(_EPOCH + timedelta(microseconds=micros), type_=column.type)
    bound = tuple_(value, literal(session_id, sessions.c.session_id.type), literal(user, sessions.c.user_name.type))
    keys = tuple_(*_keyset(ordering))
    if ordering.descending:
        return and_(column <= value, keys < bound)
    return and_(column >= value, keys > bound)


def has_matching_run(run_filter: ColumnElement[bool]) -> ColumnElement[bool]:
    """The session has at least one run matching `run_filter` (an expression over `runs`)."""
    return exists().where(
        runs.c.session_id == sessions.c.session_id, runs.c.user_name == sessions.c.user_name, run_filter
    )


async def page_rows(
    conn: AsyncConnection, conditions: Sequence[ColumnElement[bool]], ordering: SessionOrdering, limit: int
) -> list[Any]:
    stmt = select(sessions).where(*conditions).order_by(*order_clauses(ordering)).limit(limit)
    return list((await conn.execute(stmt)).mappings().all())


async def summaries(conn: AsyncConnection, keys: Sequence[tuple[str, str]]) -> list[SessionSummary]:
    """The figures of the sessions `keys` ((session_id, user) pairs), in that order, from their runs. A session
    without runs is left out (the triggers remove its row with its last run, in the same transaction, so within one
    snapshot this does not happen; it guards against a row left by a write that bypassed them)."""
    if not keys:
        return []
    # Runs of the page's session ids and users, grouped by (session_id, user): a group that is not one of the page's
    # (another user's session with the same id, in an admin's page) is simply not looked up below. Two plain IN lists
    # read ix_runs_session_id_user_name_start_time and plan in well under a millisecond; a row-valued IN of the pairs
    # becomes an OR of 50 ANDs that PostgreSQL takes several milliseconds to plan.
    in_page = and_(
        runs.c.session_id.in_(sorted({session for session, _ in keys})),
        runs.c.user_name.in_(sorted({user for _, user in keys})),
    )
    group = (runs.c.session_id, runs.c.user_name)
    sums_stmt = (
        select(
            *group,
            func.count().label("run_count"),
            func.sum(case((runs.c.parent_run_id == "", 1), else_=0)).label("top_level"),
            *(func.sum(runs.c[name]).label(name) for name in TOKEN_COLUMNS),
            func.min(runs.c.start_time).label("first_start"),
            func.max(runs.c.start_time).label("last_start"),
            func.max(runs.c.end_time).label("last_end"),
            *single_currency_columns(),
        )
        .where(in_page)
        .group_by(*group)
    )
    agents_stmt = select(*group, runs.c.agent_name).where(in_page).distinct().order_by(*group, runs.c.agent_name)
    ranked = (
        select(
            *group,
            runs.c.id,
            runs.c.status,
            func.row_number()
            .over(partition_by=group, order_by=(runs.c.start_time.desc(), runs.c.id.desc()))
            .label("rank"),
        )
        .where(in_page, runs.c.parent_run_id == "")
        .subquery("ranked")
    )
    latest_stmt = select(ranked.c.session_id, ranked.c.user_name, ranked.c.id, ranked.c.status).where(
        ranked.c.rank == 1
    )

    totals = {(row.session_id, row.user_name): row for row in await conn.execute(sums_stmt)}
    agents: dict[tuple[str, str], list[str]] = defaultdict(list)
    for agent in await conn.execute(agents_stmt):
        agents[(agent.session_id, agent.user_name)].append(agent.agent_name)
    latest = {(row.session_id, row.user_name): row for row in await conn.execute(latest_stmt)}
    mixed = {}
    if any(mixes_currencies(row) for row in totals.values()):
        mixed = await costs_by_currency(conn, group, [in_page])

    result = []
    for key in keys:
        row = totals.get(key)
        if row is None:
            continue
        last = latest.get(key)
        session_costs = mixed.get(key, GroupCosts()) if mixes_currencies(row) else costs_from_row(row)
        result.append(
            SessionSummary(
                session_id=key[0],
                user=key[1],
                run_count=int(row.run_count),
                top_level_run_count=int(row.top_level or 0),
                agent_names=tuple(agents.get(key, ())),
                start_time=to_utc(row.first_start),
                end_time=None if row.last_end is None else to_utc(row.last_end),
                last_run_start_time=to_utc(row.last_start),
                token_usage=summed_token_usage(row, "list sessions"),
                cost=session_costs.single,
                last_status=None if last is None else RunStatus(last.status),
                last_run_id="" if last is None else last.id,
                cost_by_currency=session_costs.by_currency,
            )
        )
    return result
