"""RecordRun's and RecordRuns' write path: the idempotent upsert of a run with its steps and tool calls.

Rules (stored -> incoming):
- nothing stored -> CREATED;
- same record (record_hash) -> UNCHANGED;
- stored terminal -> IGNORED (a late RUNNING snapshot or a different terminal record never overwrites it);
- stored RUNNING, incoming terminal or a RUNNING snapshot with at least as many steps -> UPDATED (steps and tool
  calls replaced); an older RUNNING snapshot (fewer steps) -> IGNORED;
- stored QUEUED, incoming anything -> UPDATED; stored RUNNING, incoming QUEUED (a late snapshot from before the run
  started) -> IGNORED.

Concurrency: the run row is inserted with ON CONFLICT DO NOTHING; when it exists it is read with SELECT .. FOR
UPDATE (PostgreSQL), so concurrent writers of one run serialise on its row. On PostgreSQL a new run is created
first in one pipelined transaction whose child inserts write nothing unless that transaction created the run row,
so a record of a stored run never touches its steps outside the row lock; a deadlock or serialization failure (with
a purge or a delete) is still retried, as for batches. On SQLite, writers of one engine are
serialised by an asyncio.Lock and take the database write lock at BEGIN IMMEDIATE; "database is locked" is retried.

Batches (RecordRuns): on PostgreSQL one transaction with set-based statements (runs_service.storage.pg_batch); on
SQLite one write transaction applying the rules above run by run. Either way each run gets the outcome RecordRun
would have given it. When the database refuses a batch for the values of a run (a data error, never expected after
validation), the batch is recorded run by run instead, so only that run is REJECTED.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import psycopg.errors
from psycopg.types.json import Jsonb
from sqlalchemy import JSON, Engine, Table, bindparam, delete, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentrun_core.domain import Run, RunStatus
from runs_service.errors import StorageUnavailable
from runs_service.queries import RecordOutcome, RecordResult
from runs_service.storage import pg_batch
from runs_service.storage.engine import SQLITE_WRITE_OPTIONS, orjson_text
from runs_service.storage.errors import is_sqlite_busy, storage_errors
from runs_service.storage.rows import RunRows, run_to_rows
from runs_service.storage.tables import run_steps, runs, tool_calls

logger = logging.getLogger(__name__)

SQLITE_BUSY_RETRIES = 6
# A PostgreSQL batch that deadlocks (with a purge or a delete) or meets a run deleted under it is tried again.
PG_BATCH_ATTEMPTS = 3
_SQLITE_RETRY_BASE_DELAY_S = 0.05

_sqlite_write_locks: weakref.WeakKeyDictionary[Engine, asyncio.Lock] = weakref.WeakKeyDictionary()


def sqlite_write_lock(engine: AsyncEngine) -> asyncio.Lock:
    """The lock every writer of this SQLite engine holds around its write transactions (recorders, deletes)."""
    lock = _sqlite_write_locks.get(engine.sync_engine)
    if lock is None:
        lock = _sqlite_write_locks[engine.sync_engine] = asyncio.Lock()
    return lock


def _positional_insert(table: Table) -> tuple[str, tuple[str, ...]]:
    names = tuple(column.name for column in table.columns)
    return f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})", names


def _insert_if_created(table: Table) -> str:
    """An INSERT of one row of a run's into `table` (its values, then the run id) that writes nothing unless this
    transaction created that run's row (its xmin is this transaction's id). So the create-first pipeline adds no child
    rows under a run stored by someone else: it neither waits for nor collides with a concurrent writer of that run's
    steps (which could deadlock), and raises nothing (an error would abort the pipeline and make psycopg log a warning
    on every re-sent run). Values are cast to base types (a cast to varchar(n) would truncate; the assignment to the
    column checks lengths as for any insert)."""
    names = ", ".join(column.name for column in table.columns)
    values = ", ".join(f"%s::{pg_batch.array_type(column).removesuffix('[]')}" for column in table.columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {values} "
        "WHERE EXISTS (SELECT FROM runs WHERE id = %s AND xmin = pg_current_xact_id()::xid)"
    )


_PG_INSERT_STEPS, _STEP_COLUMNS = _positional_insert(run_steps)
_PG_INSERT_TOOL_CALLS, _TOOL_CALL_COLUMNS = _positional_insert(tool_calls)
_PG_INSERT_RUN, _RUN_COLUMNS = _positional_insert(runs)
_PG_INSERT_NEW_RUN = f"{_PG_INSERT_RUN} ON CONFLICT (id) DO NOTHING RETURNING id"
_PG_INSERT_NEW_STEPS = _insert_if_created(run_steps)
_PG_INSERT_NEW_TOOL_CALLS = _insert_if_created(tool_calls)
# A single-run record that deadlocks (with another writer of the run, a purge or a delete) or fails serialization is
# tried again, like a batch.
PG_RECORD_ATTEMPTS = 3
_JSON_RUN_COLUMNS = frozenset(column.name for column in runs.columns if isinstance(column.type, JSON))


class _RunAlreadyStored(Exception):
    """Internal: the optimistic create found the run stored; its transaction is rolled back."""


def _jsonb(value: Any) -> Jsonb:
    return Jsonb(value, dumps=orjson_text)


async def _insert_children_psycopg(conn: AsyncConnection, rows: RunRows) -> None:
    """Steps and tool calls through psycopg's pipelined executemany, on the transaction's own connection.

    The hot path of RecordRun: going to the driver directly keeps it within a few percent of raw psycopg (plain
    Core executemany costs ~20% more CPU per run). The statements are built once from the table definitions.
    """
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert driver is not None
    async with driver.cursor() as cursor:
        if rows.steps:
            await cursor.executemany(
                _PG_INSERT_STEPS,
                [tuple(_jsonb(s[n]) if n == "payload" else s[n] for n in _STEP_COLUMNS) for s in rows.steps],
            )
        if rows.tool_calls:
            await cursor.executemany(
                _PG_INSERT_TOOL_CALLS, [tuple(call[name] for name in _TOOL_CALL_COLUMNS) for call in rows.tool_calls]
            )


async def _create_psycopg(engine: AsyncEngine, rows: RunRows, now: datetime) -> bool:
    """Creates a run that is not stored yet in ONE pipelined transaction (run row, steps, tool calls, commit: one
    round trip, like raw psycopg). Returns False, having written nothing, when the run is already stored: then its
    row insert returns no id, the child inserts write nothing (_insert_if_created), and the transaction is rolled
    back."""
    run_id = rows.run["id"]
    run_row = {**rows.run, "recorded_at": now, "updated_at": now}
    values = tuple(_jsonb(run_row[n]) if n in _JSON_RUN_COLUMNS else run_row[n] for n in _RUN_COLUMNS)
    steps = [(*(_jsonb(s[n]) if n == "payload" else s[n] for n in _STEP_COLUMNS), run_id) for s in rows.steps]
    calls = [(*(call[name] for name in _TOOL_CALL_COLUMNS), run_id) for call in rows.tool_calls]
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        try:
            async with driver.transaction(), driver.cursor() as run_cursor, driver.cursor() as cursor:
                async with driver.pipeline():
                    await run_cursor.execute(_PG_INSERT_NEW_RUN, values)
                    if steps:
                        await cursor.executemany(_PG_INSERT_NEW_STEPS, steps)
                    if calls:
                        await cursor.executemany(_PG_INSERT_NEW_TOOL_CALLS, calls)
                if await run_cursor.fetchone() is None:
                    raise _RunAlreadyStored
        except (_RunAlreadyStored, psycopg.errors.UniqueViolation):
            return False
    return True


_UPDATABLE_COLUMNS = [c.name for c in runs.columns if c.name not in ("id", "recorded_at")]


_UPDATABLE_COLUMNS = [c.name for c in runs.columns if c.name not in ("id", "recorded_at")]


def decide(stored_status: str, stored_hash: str, rows: RunRows, stored_steps: int) -> RecordResult:
    """What a record does to a stored run (the module's rules); `stored_steps` matters only when both the stored
    run and the record are RUNNING and differ."""
    run_id = rows.run["id"]
    status = RunStatus(stored_status)
    if stored_hash == rows.record_hash:
        return RecordResult(RecordOutcome.UNCHANGED, status)
    if status.is_terminal:
        logger.info(
            "run %s: stored run is %s, ignoring a %s record (first terminal record wins)",
            run_id,
            stored_status,
            rows.run["status"],
        )
        return RecordResult(RecordOutcome.IGNORED, status)
    if status is RunStatus.RUNNING and rows.run["status"] == RunStatus.QUEUED.value:
        logger.info("run %s: stored run is RUNNING, ignoring a late QUEUED record", run_id)
        return RecordResult(RecordOutcome.IGNORED, status)
    if rows.run["status"] == RunStatus.RUNNING.value and len(rows.steps) < stored_steps:
        logger.info(
            "run %s: ignoring a stale RUNNING snapshot (%d steps, %d stored)", run_id, len(rows.steps), stored_steps
        )
        return RecordResult(RecordOutcome.IGNORED, status)
    return RecordResult(RecordOutcome.UPDATED, RunStatus(rows.run["status"]))


def _rejected_by_database(rows: RunRows, error: Exception) -> RecordResult:
    orig = getattr(error, "orig", error)
    logger.error("run %s: the database refused its values: %s", rows.run["id"], orig)
    return RecordResult.rejected("STORAGE_REJECTED", "run", f"the database refused the run's values: {orig}")


def _is_data_error(error: BaseException) -> bool:
    """The database refused values (not a transient or connectivity failure)."""
    orig = getattr(error, "orig", error)
    return isinstance(orig, psycopg.errors.DataError) or isinstance(error, sa_exc.DataError)


class RunWriter:
    """Writes runs; one per engine. Statements are built once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._is_sqlite = engine.dialect.name == "sqlite"
        if self._is_sqlite:
            self._write_engine = engine.execution_options(**SQLITE_WRITE_OPTIONS)
            self._lock: asyncio.Lock | None = sqlite_write_lock(engine)
            insert_run: Any = sqlite_insert(runs)
        else:
            self._write_engine = engine
            self._lock = None
            insert_run = pg_insert(runs)
        self._insert_run = insert_run.on_conflict_do_nothing(index_elements=[runs.c.id]).returning(runs.c.id)
        stored = select(runs.c.status, runs.c.record_hash).where(runs.c.id == bindparam("run_id"))
        self._select_stored = stored if self._is_sqlite else stored.with_for_update()
        self._max_sequence = select(func.max(run_steps.c.sequence)).where(run_steps.c.run_id == bindparam("run_id"))
        self._update_run = (
            update(runs)
            .where(runs.c.id == bindparam("b_run_id"))
            .values({name: bindparam(name) for name in _UPDATABLE_COLUMNS})
        )
        self._delete_steps = delete(run_steps).where(run_steps.c.run_id == bindparam("run_id"))
        self._delete_tool_calls = delete(tool_calls).where(tool_calls.c.run_id == bindparam("run_id"))
        self._insert_steps = insert(run_steps)
        self._insert_tool_calls = insert(tool_calls)

    async def record(self, run: Run) -> RecordResult:
        """Stores `run` (already validated) following the module's rules."""
        return await self.record_rows(run_to_rows(run))

    async def record_rows(self, rows: RunRows) -> RecordResult:
        """Stores one run's rows (already validated) following the module's rules."""
        run_id = rows.run["id"]
        async with storage_errors("record run", write=True, run_id=run_id):
            if self._lock is None:
                return await self._pg_with_retries(rows)
            async with self._lock:
                return await self._sqlite_with_retries(lambda: self._record_once(rows), f"run {run_id}")

    async def record_batch(self, batch: Sequence[RunRows]) -> list[RecordResult]:
        """Stores several runs' rows (already validated); one result per run, in order. A run id that appears
        twice is recorded twice, in order (the second time after the first batch committed)."""
        first: dict[str, int] = {}
        repeats: list[int] = []
        for index, rows in enumerate(batch):
            if rows.run["id"] in first:
                repeats.append(index)
            else:
                first[rows.run["id"]] = index
        unique = sorted((batch[i] for i in first.values()), key=lambda rows: rows.run["id"])
        results: dict[int, RecordResult] = {}
        if unique:
            async with storage_errors("record runs", write=True, runs=len(unique)):
                try:
                    stored = await self._batch_once(unique)
                except sa_exc.DBAPIError as exc:
                    if not _is_data_error(exc):
                        raise
                    logger.warning("a batch of %d runs was refused (%s); recording them one by one", len(unique), exc)
                    stored = [await self._record_alone(rows) for rows in unique]
            for rows, result in zip(unique, stored, strict=True):
                results[first[rows.run["id"]]] = result
        for index in repeats:
            results[index] = await self._record_alone(batch[index])
        return [results[index] for index in range(len(batch))]

    async def _record_alone(self, rows: RunRows) -> RecordResult:
        try:
            return await self.record_rows(rows)
        except (sa_exc.DBAPIError, psycopg.Error) as exc:
            if not _is_data_error(exc):
                raise
            return _rejected_by_database(rows, exc)

    async def _batch_once(self, unique: list[RunRows]) -> list[RecordResult]:
        if self._lock is not None:
            async with self._lock:
                return await self._sqlite_with_retries(lambda: self._sqlite_batch(unique), f"{len(unique)} runs")
        for attempt in range(1, PG_BATCH_ATTEMPTS + 1):
            try:
                return await self._pg_batch(unique)
            except pg_batch.RunVanished:
                retry_reason = "a stored run was deleted meanwhile"
            except sa_exc.DBAPIError as exc:
                if not isinstance(exc.orig, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
                    raise
                retry_reason = str(exc.orig)
            if attempt == PG_BATCH_ATTEMPTS:
                raise StorageUnavailable(f"record runs: gave up after {attempt} attempts ({retry_reason})")
            logger.info("retrying a batch of %d runs (%s)", len(unique), retry_reason)
        raise AssertionError("unreachable")

    async def _pg_batch(self, unique: list[RunRows]) -> list[RecordResult]:
        now = datetime.now(UTC)
        async with self._engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            try:
                async with driver.transaction():
                    return await pg_batch.record_batch(driver, unique, now, decide)
            except psycopg.Error as exc:
                # Map like SQLAlchemy would, so storage_errors and the callers see one kind of error.
                invalidated = isinstance(exc, psycopg.OperationalError)
                raise sa_exc.DBAPIError.instance(
                    "record runs", None, exc, psycopg.Error, connection_invalidated=invalidated
                ) from exc

    async def _sqlite_batch(self, unique: list[RunRows]) -> list[RecordResult]:
        now = datetime.now(UTC)
        async with self._write_engine.begin() as conn:
            return [await self._record_in(conn, rows, now) for rows in unique]

    async def _sqlite_with_retries(self, attempt_once: Any, what: str) -> Any:
        for attempt in range(1, SQLITE_BUSY_RETRIES + 1):
            try:
                return await attempt_once()
            except Exception as exc:
                if not is_sqlite_busy(exc) or attempt == SQLITE_BUSY_RETRIES:
                    raise
                delay = _SQLITE_RETRY_BASE_DELAY_S * 2 ** (attempt - 1)
                logger.warning(
                    "SQLite busy recording %s (attempt %d/%d), retrying in %.2fs",
                    what,
                    attempt,
                    SQLITE_BUSY_RETRIES,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _pg_with_retries(self, rows: RunRows) -> RecordResult:
        """PostgreSQL: _record_once, tried again after a deadlock or a serialization failure (as a batch is), so
        concurrent records of one run never answer UNAVAILABLE "deadlock detected"."""
        for attempt in range(1, PG_RECORD_ATTEMPTS + 1):
            try:
                return await self._record_once(rows)
            except (sa_exc.DBAPIError, psycopg.Error) as exc:
                orig = getattr(exc, "orig", exc)
                if not isinstance(orig, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure):
                    raise
                if attempt == PG_RECORD_ATTEMPTS:
                    raise StorageUnavailable(f"record run: gave up after {attempt} attempts ({orig})") from exc
                logger.info("retrying run %s (%s)", rows.run["id"], orig)
        raise AssertionError("unreachable")

    async def _record_once(self, rows: RunRows) -> RecordResult:
        now = datetime.now(UTC)
        if not self._is_sqlite and await _create_psycopg(self._engine, rows, now):
            logger.debug("run %s created (%s)", rows.run["id"], rows.run["status"])
            return RecordResult(RecordOutcome.CREATED, RunStatus(rows.run["status"]))
        async with self._write_engine.begin() as conn:
            return await self._record_in(conn, rows, now)

    async def _record_in(self, conn: AsyncConnection, rows: RunRows, now: datetime) -> RecordResult:
        """One run recorded inside the open write transaction `conn`."""
        run_id = rows.run["id"]
        inserted = (await conn.execute(self._insert_run, {**rows.run, "recorded_at": now, "updated_at": now})).first()
        if inserted is not None:
            await self._insert_children(conn, rows)
            logger.debug("run %s created (%s)", run_id, rows.run["status"])
            return RecordResult(RecordOutcome.CREATED, RunStatus(rows.run["status"]))

        stored = (await conn.execute(self._select_stored, {"run_id": run_id})).one()
        stored_steps = 0
        if rows.run["status"] == RunStatus.RUNNING.value and stored.status == RunStatus.RUNNING.value:
            stored_steps = (await conn.execute(self._max_sequence, {"run_id": run_id})).scalar() or 0
        result = decide(stored.status, stored.record_hash, rows, stored_steps)
        if result.outcome is not RecordOutcome.UPDATED:
            return result
        await conn.execute(self._update_run, {**rows.run, "b_run_id": run_id, "updated_at": now})
        await conn.execute(self._delete_steps, {"run_id": run_id})
        await conn.execute(self._delete_tool_calls, {"run_id": run_id})
        await self._insert_children(conn, rows)
        logger.debug("run %s updated (%s -> %s)", run_id, stored.status, rows.run["status"])
        return result

    async def _insert_children(self, conn: AsyncConnection, rows: RunRows) -> None:
        if not self._is_sqlite:
            await _insert_children_psycopg(conn, rows)
            return
        if rows.steps:
            await conn.execute(self._insert_steps, rows.steps)
        if rows.tool_calls:
            await conn.execute(self._insert_tool_calls, rows.tool_calls)
