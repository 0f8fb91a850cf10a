"""Deleting runs in small batches (DeleteRuns and the retention purge): short transactions that never hold up ingest
or queries for long.

Each batch is its own short transaction: select the next batch_size matching runs in (start_time, id) order after
the previous batch, then `DELETE FROM runs WHERE id IN (those) AND status NOT IN ('RUNNING', 'QUEUED')`; the foreign
keys' ON DELETE CASCADE takes their steps and tool calls with them. The walk is a keyset walk from the last run
*selected*, so a long delete never rescans what it already passed, and it ends only when a selection comes back short
of a batch: runs a concurrent delete took from under a batch (the delete skips them, so the counts stay exact) never
end it early. QUEUED and RUNNING runs are deleted only when asked (DeleteRuns include_unfinished; never by the
retention purge): their terminal record would store them again. A batch that
deadlocks with a writer (PostgreSQL picks one of the two) is tried again.
Between batches the caller's `pause` runs (the purge sleeps there; DeleteRuns only yields). On SQLite each batch
holds the database's single write lock (and this engine's writer lock), so ingest waits at most one batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg.errors
from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from agentrun_core.domain import RunStatus
from runs_service.storage.engine import SQLITE_WRITE_OPTIONS
from runs_service.storage.errors import storage_errors
from runs_service.storage.run_writer import sqlite_write_lock
from runs_service.storage.tables import runs

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
DEADLOCK_ATTEMPTS = 3
_RETRYABLE = (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)
SAMPLE_SIZE = 10
# Called after each batch with the batch's duration in seconds, the runs it deleted and whether it was the last; may
# sleep (not after the last: the walk is over).
Pause = Callable[[float, int, bool], Awaitable[None]]

# QUEUED and RUNNING runs are never deleted.
_UNFINISHED_STATUSES = [status.value for status in RunStatus if not status.is_terminal]
_NOT_RUNNING = runs.c.status.not_in(_UNFINISHED_STATUSES)
_UNFINISHED = runs.c.status.in_(_UNFINISHED_STATUSES)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a keyset walk over (start_time, id) stands: after this run."""

    start_time: datetime
    run_id: str


def after(position: Position | None) -> list[ColumnElement[bool]]:
    """Runs strictly after `position` in (start_time, id) order (an index-friendly form of the row comparison)."""
    if position is None:
        return []
    return [
        runs.c.start_time >= position.start_time,
        or_(
            runs.c.start_time > position.start_time,
            and_(runs.c.start_time == position.start_time, runs.c.id > position.run_id),
        ),
    ]


class RunDeleter:
    """Counts and deletes runs matching SQL conditions (already scoped to the caller), batch by batch."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._is_sqlite = engine.dialect.name == "sqlite"
        self._write_engine = engine.execution_options(**SQLITE_WRITE_OPTIONS) if self._is_sqlite else engine

    async def count(
        self, conditions: Sequence[ColumnElement[bool]], *, include_unfinished: bool = False
    ) -> tuple[int, list[str]]:
        """(runs that would be deleted now, up to SAMPLE_SIZE of their ids, oldest first)."""
        where = [*conditions] if include_unfinished else [*conditions, _NOT_RUNNING]
        async with storage_errors("count runs to delete"), self._engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(runs).where(*where))).scalar_one()
            sample = await conn.execute(
                select(runs.c.id).where(*where).order_by(runs.c.start_time, runs.c.id).limit(SAMPLE_SIZE)
            )
            return int(total), [row[0] for row in sample]

    async def count_unfinished(self, conditions: Sequence[ColumnElement[bool]]) -> int:
        """The runs matching `conditions` that have not finished (RUNNING, QUEUED): what a delete keeps."""
        async with storage_errors("count unfinished runs"), self._engine.connect() as conn:
            query = select(func.count()).select_from(runs).where(*conditions, _UNFINISHED)
            return int((await conn.execute(query)).scalar_one())

    async def delete(
        self,
        conditions: Sequence[ColumnElement[bool]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        pause: Pause | None = None,
        what: str = "delete runs",
        include_unfinished: bool = False,
    ) -> int:
        """Deletes every run matching `conditions` with its steps and tool calls, the unfinished ones (RUNNING,
        QUEUED) only with `include_unfinished`; returns how many."""
        where = [*conditions] if include_unfinished else [*conditions, _NOT_RUNNING]
        deleted = 0
        position: Position | None = None
        while True:
            started = time.monotonic()
            async with storage_errors(what, write=True, deleted_so_far=deleted):
                found, position = await self._delete_batch(where, position, batch_size, include_unfinished)
            deleted += found
            if pause is not None:
                await pause(time.monotonic() - started, found, position is None)
            if position is None:
                return deleted

    async def _delete_batch(
        self, where: list[ColumnElement[bool]], position: Position | None, batch_size: int, include_unfinished: bool
    ) -> tuple[int, Position | None]:
        """Deletes the next batch; returns (runs deleted, the position to go on from, None when it was the last).

        The walk goes on from the last run the batch *selected*, and ends only when a selection comes back short:
        a concurrent DeleteRuns (or purge) may delete some of the selected runs first, so this call deletes fewer
        than it selected without having reached the end."""
        chosen = (
            select(runs.c.start_time, runs.c.id)
            .where(*where, *after(position))
            .order_by(runs.c.start_time, runs.c.id)
            .limit(batch_size)
        )
        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                selected, deleted = await self._execute(chosen, include_unfinished)
                break
            except sa_exc.DBAPIError as exc:
                if not isinstance(exc.orig, _RETRYABLE) or attempt == DEADLOCK_ATTEMPTS:
                    raise
                logger.info("a delete batch met a concurrent writer (%s); trying it again", exc.orig)
        if len(selected) < batch_size:
            return deleted, None
        last_start, last_id = selected[-1]
        return deleted, Position(last_start, last_id)

    async def _execute(self, chosen: Any, include_unfinished: bool) -> tuple[list[Any], int]:
        """In one transaction: the runs `chosen` selects (start_time, id), then the delete of those still there and
        (unless `include_unfinished`) not RUNNING; (the selected rows, how many this transaction deleted)."""
        lock = sqlite_write_lock(self._engine) if self._is_sqlite else None
        if lock is not None:
            await lock.acquire()
        try:
            async with self._write_engine.begin() as conn:
                selected = list((await conn.execute(chosen)).all())
                if not selected:
                    return selected, 0
                chosen_ids = runs.c.id.in_([row[1] for row in selected])
                doomed = delete(runs).where(chosen_ids, *([] if include_unfinished else [_NOT_RUNNING]))
                return selected, (await conn.execute(doomed)).rowcount
        finally:
            if lock is not None:
                lock.release()
