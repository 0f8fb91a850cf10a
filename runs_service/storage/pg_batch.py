"""PostgreSQL: a batch of runs recorded in one transaction with set-based statements (RecordRuns' write path).

One transaction per batch, whatever its mix of new and stored runs:
1. one multi-row `INSERT INTO runs .. ON CONFLICT (id) DO NOTHING RETURNING id` creates the runs not stored yet;
2. the others are read with `SELECT .. FOR UPDATE` (in id order, like the insert) and decided one by one exactly as
   RecordRun decides (runs_service.storage.run_writer.decide): UNCHANGED, IGNORED or UPDATED;
3. updated runs get their row rewritten and their old steps and tool calls deleted (one statement per table);
4. the steps and tool calls of every created or updated run go in with COPY.

Rows are taken in run id order by every statement, so two batches sharing runs cannot deadlock on them (a deadlock
with anything else is retried by the caller). The rows are written through psycopg directly: the batch is what
makes ingest cheap, and SQLAlchemy's per-row work would cost more than everything else here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection as PsycopgConnection
from psycopg.types.json import Jsonb
from sqlalchemy import JSON

from agentrun_core.domain import RunStatus
from runs_service.queries import RecordOutcome, RecordResult
from runs_service.storage.engine import orjson_text
from runs_service.storage.rows import RunRows
from runs_service.storage.tables import run_steps, runs, tool_calls

_RUN_COLUMNS = tuple(column.name for column in runs.columns)
_STEP_COLUMNS = tuple(column.name for column in run_steps.columns)
_TOOL_CALL_COLUMNS = tuple(column.name for column in tool_calls.columns)
_JSON_RUN_COLUMNS = frozenset(column.name for column in runs.columns if isinstance(column.type, JSON))
_ROW_PLACEHOLDERS = f"({', '.join(['%s'] * len(_RUN_COLUMNS))})"
_UPDATED_COLUMNS = tuple(name for name in _RUN_COLUMNS if name not in ("id", "recorded_at"))

_SELECT_STORED = "SELECT id, status, record_hash FROM runs WHERE id = ANY(%s) ORDER BY id FOR UPDATE"
_SELECT_MAX_SEQUENCE = "SELECT run_id, max(sequence) FROM run_steps WHERE run_id = ANY(%s) GROUP BY run_id"
_UPDATE_RUN = f"UPDATE runs SET {', '.join(f'{name} = %s' for name in _UPDATED_COLUMNS)} WHERE id = %s"
_DELETE_STEPS = "DELETE FROM run_steps WHERE run_id = ANY(%s)"
_DELETE_TOOL_CALLS = "DELETE FROM tool_calls WHERE run_id = ANY(%s)"
_COPY_STEPS = f"COPY run_steps ({', '.join(_STEP_COLUMNS)}) FROM STDIN"
_COPY_TOOL_CALLS = f"COPY tool_calls ({', '.join(_TOOL_CALL_COLUMNS)}) FROM STDIN"
_PAYLOAD_INDEX = _STEP_COLUMNS.index("payload")


# decide(stored_status, stored_record_hash, incoming rows, stored step count) -> what to do with a stored run.
Decide = Callable[[str, str, RunRows, int], RecordResult]


class RunVanished(Exception):
    """Internal: a run the insert found stored was deleted before it could be locked; the batch is retried."""


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=orjson_text)


def _insert_runs_statement(count: int) -> str:
    return (
        f"INSERT INTO runs ({', '.join(_RUN_COLUMNS)}) VALUES {', '.join([_ROW_PLACEHOLDERS] * count)} "
        "ON CONFLICT (id) DO NOTHING RETURNING id"
    )


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
        params: list[Any] = []
        for rows in batch:
            params.extend(_run_values(rows.run, now))
        await cursor.execute(_insert_runs_statement(len(batch)), params)
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
    if any(rows.steps for rows in write):
        async with cursor.copy(_COPY_STEPS) as copy:
            for rows in write:
                for step in rows.steps:
                    values = [step[name] for name in _STEP_COLUMNS]
                    values[_PAYLOAD_INDEX] = _jsonb(values[_PAYLOAD_INDEX])
                    await copy.write_row(values)
    if any(rows.tool_calls for rows in write):
        async with cursor.copy(_COPY_TOOL_CALLS) as copy:
            for rows in write:
                for call in rows.tool_calls:
                    await copy.write_row([call[name] for name in _TOOL_CALL_COLUMNS])
