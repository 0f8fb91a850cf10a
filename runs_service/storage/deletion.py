"""Deleting runs in small batches (DeleteRuns and the retention purge): short transactions that never hold up ingest
or queries for long.

Each batch is one transaction: select the next `batch_size` matching runs in (start_time, id) order after the
previous batch (a keyset walk, so a long delete never rescans what it already passed), delete their steps and tool
calls, then the runs themselves. RUNNING runs are never deleted: their terminal record would store them again.
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

from sqlalchemy import ColumnElement, and_, bindparam, delete, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentrun_core.domain import RunStatus
from runs_service.storage.engine import SQLITE_WRITE_OPTIONS
from runs_service.storage.errors import storage_errors
from runs_service.storage.run_writer import sqlite_write_lock
from runs_service.storage.tables import run_steps, runs, tool_calls

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
SAMPLE_SIZE = 10
# Called after each batch with the batch's duration in seconds and the runs it deleted; may sleep.
Pause = Callable[[float, int], Awaitable[None]]

_NOT_RUNNING = runs.c.status != RunStatus.RUNNING.value


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
        ids: Any = bindparam("ids", expanding=True)
        self._delete_steps = delete(run_steps).where(run_steps.c.run_id.in_(ids))
        self._delete_tool_calls = delete(tool_calls).where(tool_calls.c.run_id.in_(ids))
        self._delete_runs = delete(runs).where(runs.c.id.in_(ids), _NOT_RUNNING)

    async def count(self, conditions: Sequence[ColumnElement[bool]]) -> tuple[int, list[str]]:
        """(runs that would be deleted now, up to SAMPLE_SIZE of their ids, oldest first)."""
        where = [*conditions, _NOT_RUNNING]
        async with storage_errors("count runs to delete"), self._engine.connect() as conn:
            total = (await conn.execute(select(func.count()).select_from(runs).where(*where))).scalar_one()
            sample = await conn.execute(
                select(runs.c.id).where(*where).order_by(runs.c.start_time, runs.c.id).limit(SAMPLE_SIZE)
            )
            return int(total), [row[0] for row in sample]

    async def delete(
        self,
        conditions: Sequence[ColumnElement[bool]],
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        pause: Pause | None = None,
        what: str = "delete runs",
    ) -> int:
        """Deletes every non-RUNNING run matching `conditions` with its steps and tool calls; returns how many."""
        where = [*conditions, _NOT_RUNNING]
        deleted = 0
        position: Position | None = None
        while True:
            started = time.monotonic()
            async with storage_errors(what, deleted_so_far=deleted):
                found, position = await self._delete_batch(where, position, batch_size)
            deleted += found
            if position is None:
                return deleted
            if pause is not None:
                await pause(time.monotonic() - started, found)

    async def _delete_batch(
        self, where: list[ColumnElement[bool]], position: Position | None, batch_size: int
    ) -> tuple[int, Position | None]:
        """Deletes the next batch; returns (runs deleted, the position to go on from, None when it was the last)."""
        stmt: Any = (
            select(runs.c.id, runs.c.start_time)
            .where(*where, *after(position))
            .order_by(runs.c.start_time, runs.c.id)
            .limit(batch_size)
        )
        lock = sqlite_write_lock(self._engine) if self._is_sqlite else None
        if lock is not None:
            await lock.acquire()
        try:
            async with self._write_engine.begin() as conn:
                rows = (await conn.execute(stmt)).all()
                if not rows:
                    return 0, None
                found = await self._delete_ids(conn, sorted(row[0] for row in rows))
        finally:
            if lock is not None:
                lock.release()
        last = rows[-1]
        more = len(rows) == batch_size
        return found, Position(last[1], last[0]) if more else None

    async def _delete_ids(self, conn: AsyncConnection, ids: list[str]) -> int:
        params = {"ids": ids}
        await conn.execute(self._delete_steps, params)
        await conn.execute(self._delete_tool_calls, params)
        result = await conn.execute(self._delete_runs, params)
        return int(result.rowcount or 0)
