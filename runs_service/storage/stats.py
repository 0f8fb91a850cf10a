"""GetRunStats and GetToolStats queries.

Sums and counts are exact on both dialects. Percentiles:
- SQLite (small deployments): the durations are read sorted and interpolated in Python exactly like PostgreSQL's
  percentile_cont (runs_service.storage.percentiles).
- PostgreSQL: an exact percentile_cont cannot run as a parallel aggregate and needs a sort of every duration of the
  range (0.8-0.9 s at a million runs). Instead one parallel hash aggregate groups the rows by (key, log bucket of the
  duration) and keeps each bucket's count, minimum and maximum (a DDSketch-like histogram); the percentile is then
  interpolated in Python. Buckets are 1% wide, so a percentile is within 1% of percentile_cont's value, and exact
  where the ranks it needs fall in buckets of at most two runs (small groups).
- PostgreSQL, grouped by session: many small groups (a session holds tens of runs), where the histogram has about as
  many (key, bucket) rows as there are runs and gains nothing; there the exact percentile_cont runs per group (one
  sort by session, then a small sort per group).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, cast, func, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection

from agentrun_core.domain import RunStatus
from runs_service.errors import InvalidArgument
from runs_service.queries import GroupBy, RunStatsRow, ToolStatsRow
from runs_service.storage.cost_sums import (
    GroupCosts,
    costs_by_currency,
    costs_from_row,
    mixes_currencies,
    single_currency_columns,
)
from runs_service.storage.percentiles import HistogramBucket, histogram_percentile, micros_to_duration, percentile_cont
from runs_service.storage.sums import summed_token_usage
from runs_service.storage.tables import TOKEN_COLUMNS, runs, tool_calls

# QUEUED and RUNNING: not finished, left out of the success rate's denominator.
_NOT_FINISHED = tuple(status.value for status in RunStatus if not status.is_terminal)
P50 = 0.5
P95 = 0.95
# Bucket b holds durations d (microseconds) with floor(ln(max(d, 1)) / ln(GAMMA)) == b, so hi / lo <= GAMMA.
GAMMA = 1.01
_BUCKETS_PER_LN = 1.0 / math.log(GAMMA)
# For this transaction only: the planner estimates the (key, bucket) hash table at a few MB, over the default 4 MB
# work_mem, and would otherwise sort every row (spilling to disk) instead; JIT compilation costs ~50 ms and gains
# nothing on a scan this simple. Measured at 1M runs: 585 ms -> 255 ms.
_ANALYTICS_SETTINGS = (text("SET LOCAL work_mem = '32MB'"), text("SET LOCAL jit = off"))

Percentiles = tuple[float | None, float | None]

# Groupings with many small groups: exact percentile_cont on PostgreSQL (see the module docstring).
_EXACT_ON_POSTGRES = frozenset({GroupBy.SESSION})


def check_range(start: datetime, end: datetime) -> None:
    for name, value in (("start_time", start), ("end_time", end)):
        if value.tzinfo is None:
            raise InvalidArgument(name, "must be a timezone-aware datetime (UTC)")
    if end <= start:
        raise InvalidArgument("end_time", f"must be after start_time ({end.isoformat()} <= {start.isoformat()})")


def group_key(group_by: GroupBy, dialect: str) -> ColumnElement[Any]:
    """The grouping expression. On PostgreSQL text keys group under the "C" collation: byte order (as SQLite's
    BINARY) and a much cheaper comparison than a linguistic collation at a million rows."""
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
        case GroupBy.SESSION:
            column = runs.c.session_id
        case GroupBy.DAY:
            if dialect == "postgresql":
                return func.to_char(func.timezone("UTC", runs.c.start_time), "YYYY-MM-DD")
            # SQLite stores UTC times as "YYYY-MM-DD HH:MM:SS.ffffff".
            return func.substr(runs.c.start_time, 1, 10)
    return column.collate("C") if dialect == "postgresql" else column


def _rate(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _log_bucket(duration_us: ColumnElement[Any]) -> ColumnElement[int]:
    """PostgreSQL: the histogram bucket of a duration (NULL for a NULL duration)."""
    return cast(func.floor(func.ln(func.greatest(duration_us, 1)) * _BUCKETS_PER_LN), Integer)


async def _histogram_rows(
    conn: AsyncConnection,
    keys: Sequence[ColumnElement[Any]],
    sums: Sequence[ColumnElement[Any]],
    duration_us: ColumnElement[Any],
    select_from: Any,
    conditions: Sequence[ColumnElement[bool]],
) -> list[Any]:
    """PostgreSQL: one row per group `keys` with the merged `sums` (each labelled; merged with sum, or with min/max
    for labels starting with "min_"/"max_") and `histogram`, the group's durations as JSON [[bucket, count, min,
    max], ...] ordered by bucket. The inner aggregate over (keys, bucket) is what runs in parallel; the outer one
    merges a few thousand rows."""
    for setting in _ANALYTICS_SETTINGS:
        await conn.execute(setting)
    bucket = _log_bucket(duration_us).label("bucket")
    inner = (
        select(
            *keys,
            bucket,
            func.count(duration_us).label("timed"),
            func.min(duration_us).label("lo"),
            func.max(duration_us).label("hi"),
            *sums,
        )
        .select_from(select_from)
        .where(*conditions)
        .group_by(*keys, bucket)
        .subquery("by_bucket")
    )
    outer_keys = [inner.c[k.name] for k in keys]
    histogram = func.json_agg(
        aggregate_order_by(func.json_build_array(inner.c.bucket, inner.c.timed, inner.c.lo, inner.c.hi), inner.c.bucket)
    ).filter(inner.c.bucket.is_not(None))
    stmt = (
        select(
            *outer_keys,
            *(_merge(s.name)(inner.c[s.name]).label(s.name) for s in sums),
            histogram.label("histogram"),
        )
        .group_by(*outer_keys)
        .order_by(*outer_keys)
    )
    return list((await conn.execute(stmt)).all())


def _merge(label: str) -> Any:
    """How per-bucket partial aggregates of column `label` combine into the group's."""
    if label.startswith("min_"):
        return func.min
    if label.startswith("max_"):
        return func.max
    return func.sum


def _from_histogram(histogram: list[list[int]] | None) -> Percentiles:
    buckets = [HistogramBucket(count=count, low=low, high=high) for _, count, low, high in histogram or ()]
    return histogram_percentile(buckets, P50), histogram_percentile(buckets, P95)


def _exact(durations: dict[Any, list[int]]) -> dict[Any, Percentiles]:
    return {k: (percentile_cont(v, P50), percentile_cont(v, P95)) for k, v in durations.items()}


async def run_stats(
    conn: AsyncConnection, group_by: GroupBy, conditions: Sequence[ColumnElement[bool]]
) -> list[RunStatsRow]:
    """Aggregates over runs matching `conditions` (time range, scope and filter), grouped by `group_by`."""
    dialect = conn.dialect.name
    key = group_key(group_by, dialect).label("key")
    sums: list[Any] = [
        func.count().label("run_count"),
        func.sum(case((runs.c.status == RunStatus.COMPLETED.value, 1), else_=0)).label("completed"),
        func.sum(case((runs.c.status.in_(_NOT_FINISHED), 0), else_=1)).label("terminal"),
        *(func.sum(runs.c[name]).label(name) for name in TOKEN_COLUMNS),
        func.max(runs.c.max_context_window_used).label("max_context_window_used"),
        *single_currency_columns(),
    ]
    percentiles: dict[str, Percentiles]
    if dialect == "postgresql" and group_by in _EXACT_ON_POSTGRES:
        for setting in _ANALYTICS_SETTINGS:
            await conn.execute(setting)
        exact = [
            func.percentile_cont(P50).within_group(runs.c.duration_us).label("p50"),
            func.percentile_cont(P95).within_group(runs.c.duration_us).label("p95"),
        ]
        stmt = select(key, *sums, *exact).where(*conditions).group_by(key).order_by(key)
        rows = list((await conn.execute(stmt)).all())
        percentiles = {row.key: (row.p50, row.p95) for row in rows}
    elif dialect == "postgresql":
        rows = await _histogram_rows(conn, [key], sums, runs.c.duration_us, runs, conditions)
        percentiles = {row.key: _from_histogram(row.histogram) for row in rows}
    else:
        rows = list((await conn.execute(select(key, *sums).where(*conditions).group_by(key).order_by(key))).all())
        durations: dict[str, list[int]] = defaultdict(list)
        duration_stmt = (
            select(key, runs.c.duration_us)
            .where(*conditions, runs.c.duration_us.is_not(None))
            .order_by(key, runs.c.duration_us)
        )
        for key_value, duration_us in (await conn.execute(duration_stmt)).all():
            durations[key_value].append(duration_us)
        percentiles = _exact(durations)

    mixed = await costs_by_currency(conn, [key], conditions) if any(mixes_currencies(row) for row in rows) else {}
    result = []
    for row in rows:
        p50, p95 = percentiles.get(row.key, (None, None))
        completed = int(row.completed or 0)
        group_costs = mixed.get((row.key,), GroupCosts()) if mixes_currencies(row) else costs_from_row(row)
        single = group_costs.single
        result.append(
            RunStatsRow(
                key=str(row.key),
                run_count=int(row.run_count),
                completed_count=completed,
                success_rate=_rate(completed, int(row.terminal or 0)),
                token_usage=summed_token_usage(row, "run stats"),
                cost_total=None if single is None else single.amount,
                duration_p50=micros_to_duration(p50),
                duration_p95=micros_to_duration(p95),
                cost_currency="" if single is None else single.currency_code,
                price_table_version="" if single is None else single.price_table_version,
                costs_by_currency=group_costs.by_currency,
                max_context_window_used=float(row.max_context_window_used or 0.0),
            )
        )
    return result


async def tool_stats(conn: AsyncConnection, run_conditions: Sequence[ColumnElement[bool]]) -> list[ToolStatsRow]:
    """Per (tool name, server) aggregates over the tool calls of runs matching `run_conditions`."""
    dialect = conn.dialect.name
    # An alias, so that a filter's own EXISTS over tool_calls does not correlate with this query's tool_calls.
    calls = tool_calls.alias("tc")
    joined = calls.join(runs, runs.c.id == calls.c.run_id)
    group = [calls.c.name, calls.c.server]
    sums: list[Any] = [
        func.count().label("call_count"),
        func.sum(case((calls.c.is_error, 1), else_=0)).label("error_count"),
    ]
    percentiles: dict[tuple[str, str], Percentiles]
    if dialect == "postgresql":
        rows = await _histogram_rows(conn, group, sums, calls.c.duration_us, joined, run_conditions)
        percentiles = {(row.name, row.server): _from_histogram(row.histogram) for row in rows}
    else:
        stmt = select(*group, *sums).select_from(joined).where(*run_conditions).group_by(*group).order_by(*group)
        rows = list((await conn.execute(stmt)).all())
        durations: dict[tuple[str, str], list[int]] = defaultdict(list)
        duration_stmt = (
            select(calls.c.name, calls.c.server, calls.c.duration_us)
            .select_from(joined)
            .where(*run_conditions)
            .order_by(calls.c.name, calls.c.server, calls.c.duration_us)
        )
        for name, server, duration_us in (await conn.execute(duration_stmt)).all():
            durations[(name, server)].append(duration_us)
        percentiles = _exact(durations)

    result = []
    for row in rows:
        p50, p95 = percentiles.get((row.name, row.server), (None, None))
        calls_count, errors = int(row.call_count), int(row.error_count or 0)
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
