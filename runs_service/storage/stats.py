"""GetRunStats and GetToolStats queries.

Percentiles: PostgreSQL computes them in SQL (percentile_cont WITHIN GROUP); SQLite has no such aggregate, so the
durations are read sorted and interpolated in Python the same way (runs_service.storage.percentiles).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agentrun_core.domain import RunStatus, TokenUsage
from runs_service.domain import GroupBy, InvalidArgument, RunStatsRow, ToolStatsRow
from runs_service.storage.percentiles import micros_to_duration, percentile_cont
from runs_service.storage.tables import TOKEN_COLUMNS, runs, tool_calls

P50 = 0.5
P95 = 0.95


def check_range(start: datetime, end: datetime) -> None:
    for name, value in (("start_time", start), ("end_time", end)):
        if value.tzinfo is None:
            raise InvalidArgument(name, "must be a timezone-aware datetime (UTC)")
    if end <= start:
        raise InvalidArgument("end_time", f"must be after start_time ({end.isoformat()} <= {start.isoformat()})")


def group_key(group_by: GroupBy, dialect: str) -> ColumnElement[Any]:
    """The grouping expression. On PostgreSQL text keys group under the "C" collation: byte order (as SQLite's
    BINARY) and a much cheaper sort than a linguistic collation at a million rows."""
    column: ColumnElement[Any]
    match group_by:
        case GroupBy.AGENT:
            column = runs.c.agent_name
        case GroupBy.MODEL:
            column = runs.c.model_name
        case GroupBy.USER:
            column = runs.c.user_name
        case GroupBy.STATUS:
            column = runs.c.status
        case GroupBy.DAY:
            if dialect == "postgresql":
                return func.to_char(func.timezone("UTC", runs.c.start_time), "YYYY-MM-DD")
            # SQLite stores UTC times as "YYYY-MM-DD HH:MM:SS.ffffff".
            return func.substr(runs.c.start_time, 1, 10)
    return column.collate("C") if dialect == "postgresql" else column


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


async def run_stats(
    conn: AsyncConnection, group_by: GroupBy, conditions: Sequence[ColumnElement[bool]]
) -> list[RunStatsRow]:
    """Aggregates over runs matching `conditions` (time range, scope and filter), grouped by `group_by`."""
    dialect = conn.dialect.name
    key = group_key(group_by, dialect).label("key")
    columns: list[Any] = [
        key,
        func.count().label("run_count"),
        func.coalesce(func.sum(case((runs.c.status == RunStatus.COMPLETED.value, 1), else_=0)), 0).label("completed"),
        func.coalesce(func.sum(case((runs.c.status != RunStatus.RUNNING.value, 1), else_=0)), 0).label("terminal"),
        *(func.coalesce(func.sum(runs.c[name]), 0).label(name) for name in TOKEN_COLUMNS),
        func.sum(runs.c.cost).label("cost_total"),
    ]
    if dialect == "postgresql":
        columns += [
            func.percentile_cont(P50).within_group(runs.c.duration_us).label("p50"),
            func.percentile_cont(P95).within_group(runs.c.duration_us).label("p95"),
        ]
    stmt = select(*columns).where(*conditions).group_by(key).order_by(key)
    rows = (await conn.execute(stmt)).all()

    percentiles: dict[str, tuple[float | None, float | None]] = {}
    if dialect == "postgresql":
        percentiles = {row.key: (row.p50, row.p95) for row in rows}
    else:
        durations: dict[str, list[int]] = defaultdict(list)
        duration_stmt = (
            select(key, runs.c.duration_us)
            .where(*conditions, runs.c.duration_us.is_not(None))
            .order_by(key, runs.c.duration_us)
        )
        for key_value, duration_us in (await conn.execute(duration_stmt)).all():
            durations[key_value].append(duration_us)
        percentiles = {k: (percentile_cont(v, P50), percentile_cont(v, P95)) for k, v in durations.items()}

    result = []
    for row in rows:
        p50, p95 = percentiles.get(row.key, (None, None))
        cost_total = row.cost_total
        result.append(
            RunStatsRow(
                key=str(row.key),
                run_count=int(row.run_count),
                completed_count=int(row.completed),
                success_rate=_rate(int(row.completed), int(row.terminal)),
                token_usage=TokenUsage(**{name: int(getattr(row, name)) for name in TOKEN_COLUMNS}),
                cost_total=Decimal(0) if cost_total is None else Decimal(cost_total),
                duration_p50=micros_to_duration(p50),
                duration_p95=micros_to_duration(p95),
            )
        )
    return result


async def tool_stats(conn: AsyncConnection, run_conditions: Sequence[ColumnElement[bool]]) -> list[ToolStatsRow]:
    """Per (tool name, server) aggregates over the tool calls of runs matching `run_conditions`."""
    dialect = conn.dialect.name
    # An alias, so that a filter's own EXISTS over tool_calls does not correlate with this query's tool_calls.
    calls = tool_calls.alias("tc")
    joined = calls.join(runs, runs.c.id == calls.c.run_id)
    columns: list[Any] = [
        calls.c.name,
        calls.c.server,
        func.count().label("call_count"),
        func.coalesce(func.sum(case((calls.c.is_error, 1), else_=0)), 0).label("error_count"),
    ]
    if dialect == "postgresql":
        columns += [
            func.percentile_cont(P50).within_group(calls.c.duration_us).label("p50"),
            func.percentile_cont(P95).within_group(calls.c.duration_us).label("p95"),
        ]
    group = (calls.c.name, calls.c.server)
    stmt = select(*columns).select_from(joined).where(*run_conditions).group_by(*group).order_by(*group)
    rows = (await conn.execute(stmt)).all()

    percentiles: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    if dialect == "postgresql":
        percentiles = {(row.name, row.server): (row.p50, row.p95) for row in rows}
    else:
        durations: dict[tuple[str, str], list[int]] = defaultdict(list)
        duration_stmt = (
            select(calls.c.name, calls.c.server, calls.c.duration_us)
            .select_from(joined)
            .where(*run_conditions)
            .order_by(calls.c.name, calls.c.server, calls.c.duration_us)
        )
        for name, server, duration_us in (await conn.execute(duration_stmt)).all():
            durations[(name, server)].append(duration_us)
        percentiles = {k: (percentile_cont(v, P50), percentile_cont(v, P95)) for k, v in durations.items()}

    result = []
    for row in rows:
        p50, p95 = percentiles.get((row.name, row.server), (None, None))
        calls_count, errors = int(row.call_count), int(row.error_count)
        result.append(
            ToolStatsRow(
                tool_name=row.name,
                server=row.server,
                call_count=calls_count,
                error_count=errors,
                error_rate=_rate(errors, calls_count),
                duration_p50=micros_to_duration(p50),
                duration_p95=micros_to_duration(p95),
            )
        )
    return result
