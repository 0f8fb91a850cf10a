"""PostgreSQL: a batch of runs recorded in one transaction with set-based statements (RecordRuns' write path).

One transaction per batch, whatever its mix of new and stored runs:
1. one `INSERT INTO runs .. SELECT * FROM unnest(<one array per column>) ON CONFLICT (id) DO NOTHING RETURNING id`
   creates the runs not stored yet;
2. the others are read with `SELECT .. FOR UPDATE` (in id order, like the insert) and decided one by one exactly as
   RecordRun decides (runs_service.storage.run_writer.decide): UNCHANGED, IGNORED or UPDATED;
3. updated runs get their row rewritten and their old steps and tool calls deleted (one statement per table);
4. the steps and tool calls of every created or updated run go in with COPY (text lines built by
   runs_service.storage.copy_text, one write per table).

Rows are taken in run id order by every statement, so two batches sharing runs cannot deadlock on them (a deadlock
with anything else is retried by the caller). The rows are written through psycopg directly: the batch is what
makes ingest cheap, and SQLAlchemy's per-row work would cost more than everything else here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg import AsyncConnection as PsycopgConnection
from psycopg.types.json import Jsonb
from sqlalchemy import JSON

from agentrun_core.domain import RunStatus
from runs_service.queries import RecordOutcome, RecordResult
from runs_service.storage import copy_text
from runs_service.storage.engine import orjson_text
from runs_service.storage.rows import RunRows
from runs_service.storage.tables import run_steps, runs, tool_calls

# COPY writes every column of the child tables (a column added to them must be added to copy_text too).
assert set(copy_text.STEP_COLUMNS) == {c.name for c in run_steps.columns}
assert set(copy_text.TOOL_CALL_COLUMNS) == {c.name for c in tool_calls.columns}

_RUN_COLUMNS = tuple(column.name for column in runs.columns)
_JSON_RUN_COLUMNS = frozenset(column.name for column in runs.columns if isinstance(column.type, JSON))


def array_type(column: Any) -> str:
    """The array type a column's values are sent as: base types only (an explicit cast to varchar(n) would silently
    truncate; the INSERT's assignment to the column then checks lengths and precision as for any insert)."""
    python = column.type.python_type if not isinstance(column.type, JSON) else dict
    if isinstance(column.type, JSON):
        return "jsonb[]"
    if python is datetime:
        return "timestamptz[]"
    if python is int:
        return "bigint[]"
    if python is float:
        return "double precision[]"
    if python is Decimal:
        return "numeric[]"
    if python is bool:
        return "boolean[]"
    if python is not str:
        raise TypeError(f"{column.table.name}.{column.name}: no array type for {python.__name__} (pg_batch.array_type)")
    return "text[]"


# One statement text whatever the batch size (psycopg parses a query once per text): the batch's values go as one
# array per column, turned back into rows by unnest.
_INSERT_RUNS = (
    f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) "
    f"SELECT * FROM unnest({', '.join(f'%s::{array_type(column)}' for column in runs.columns)}) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)
_UPDATED_COLUMNS = tuple(name for name in _RUN_COLUMNS if name not in ("id", "recorded_at"))

_SELECT_STORED = "SELECT id, status, record_hash FROM runs WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_SELECT_MAX_SEQUENCE = "SELECT run_id, max(sequence) FROM run_steps WHERE run_id = ANY(%s) GROUP BY run_id"
_UPDATE_RUN = f"UPDATE runs SET {', '.join(f'{name} = %s' for name in _UPDATED_COLUMNS)} WHERE id = %s"
_DELETE_STEPS = "DELETE FROM run_steps WHERE run_id = ANY(%s)"
_DELETE_TOOL_CALLS = "DELETE FROM tool_calls WHERE run_id = ANY(%s)"
_COPY_STEPS = f"COPY run_steps ({', '.join(copy_text.STEP_COLUMNS)}) FROM STDIN"
_COPY_TOOL_CALLS = f"COPY tool_calls ({', '.join(copy_text.TOOL_CALL_COLUMNS)}) FROM STDIN"


# decide(stored_status, stored_record_hash, incoming rows, stored step count) -> what to do with a stored run.
Decide = Callable[[str, str, RunRows, int], RecordResult]


class RunVanished(Exception):
    """Internal: a run the insert found stored was deleted before it could be locked; the batch is retried."""


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=orjson_text)


def _run_values(row: dict[str, Any], now: datetime) -> list[Any]:
    values: list[Any] = []
    for name in _RUN_COLUMNS:
        if name in ("recorded_at", "updated_at"):
            values.append(now)
        elif name in _JSON_RUN_COLUMNS:
            values.append(_jsonb(row[name]))
        else:
            values.append(row[name])
    return values


async def record_batch(
    driver: PsycopgConnection[Any],
    batch: Sequence[RunRows],
    now: datetime,
    decide: Decide,
) -> list[RecordResult]:
    """Records `batch` (distinct run ids, sorted by id) in the caller's open transaction on `driver`; returns one
    result per run in batch order. `decide(stored_status, stored_hash, rows, stored_steps)` -> RecordResult decides
    a stored run (run_writer.decide)."""
    async with driver.cursor() as cursor:
        values = [_run_values(rows.run, now) for rows in batch]
        await cursor.execute(_INSERT_RUNS, [list(column) for column in zip(*values, strict=True)])
        created = {row[0] for row in await cursor.fetchall()}
        results: dict[str, RecordResult] = {}
        write = [rows for rows in batch if rows.run["id"] in created]
        for rows in write:
            results[rows.run["id"]] = RecordResult(RecordOutcome.CREATED, RunStatus(rows.run["status"]))
        stored_ids = [rows.run["id"] for rows in batch if rows.run["id"] not in created]
        if stored_ids:
            updated = await _decide_stored(cursor, [r for r in batch if r.run["id"] not in created], decide, results)
            if updated:
                await _rewrite(cursor, updated, now)
                write.extend(updated)
        if write:
            await _copy_children(cursor, write)
    return [results[rows.run["id"]] for rows in batch]


async def _decide_stored(
    cursor: Any, stored_batch: list[RunRows], decide: Decide, results: dict[str, RecordResult]
) -> list[RunRows]:
    ids = [rows.run["id"] for rows in stored_batch]
    await cursor.execute(_SELECT_STORED, (ids,))
    stored = {row[0]: (row[1], row[2]) for row in await cursor.fetchall()}
    if len(stored) != len(ids):
        raise RunVanished
    # A RUNNING snapshot over a stored RUNNING run needs the stored step count (an older snapshot is IGNORED).
    snapshot_ids = [
        rows.run["id"]
        for rows in stored_batch
        if rows.run["status"] == "RUNNING"
        and stored[rows.run["id"]][0] == "RUNNING"
        and stored[rows.run["id"]][1] != rows.record_hash
    ]
    stored_steps: dict[str, int] = {}
    if snapshot_ids:
        await cursor.execute(_SELECT_MAX_SEQUENCE, (snapshot_ids,))
        stored_steps = {row[0]: int(row[1]) for row in await cursor.fetchall()}
    updated = []
    for rows in stored_batch:
        run_id = rows.run["id"]
        status, record_hash = stored[run_id]
        result = decide(status, record_hash, rows, stored_steps.get(run_id, 0))
        results[run_id] = result
        if result.outcome is RecordOutcome.UPDATED:
            updated.append(rows)
    return updated


async def _rewrite(cursor: Any, updated: list[RunRows], now: datetime) -> None:
    """The run rows of `updated` rewritten (recorded_at kept), their old steps and tool calls deleted."""
    values = []
    for rows in updated:
        row = rows.run
        values.append(
            [
                now if name == "updated_at" else _jsonb(row[name]) if name in _JSON_RUN_COLUMNS else row[name]
                for name in _UPDATED_COLUMNS
            ]
            + [row["id"]]
        )
    await cursor.executemany(_UPDATE_RUN, values)
    ids = [rows.run["id"] for rows in updated]
    await cursor.execute(_DELETE_STEPS, (ids,))
    await cursor.execute(_DELETE_TOOL_CALLS, (ids,))


async def _copy_children(cursor: Any, write: list[RunRows]) -> None:
    steps = copy_text.step_lines(step for rows in write for step in rows.steps)
    if steps:
        async with cursor.copy(_COPY_STEPS) as copy:
            await copy.write(steps)
    calls = copy_text.tool_call_lines(call for rows in write for call in rows.tool_calls)
    if calls:
        async with cursor.copy(_COPY_TOOL_CALLS) as copy:
            await copy.write(calls)
