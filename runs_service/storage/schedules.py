"""Scheduled runs' shared state: the tick claims (one run per tick, whichever replica asks first) and pause state.

Every ExecutionService replica asks to claim every tick of every schedule it runs; the primary key on
(schedule, tick_time) lets exactly one insert win (PostgreSQL: INSERT .. ON CONFLICT DO NOTHING, a racing insert
waits for the first to commit; SQLite: one writer at a time). A paused schedule is refused in the same transaction.
Only the latest KEEP_TICKS claims of each schedule are kept: the scheduler needs only the latest one.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from runs_service.storage.engine import SQLITE_WRITE_OPTIONS
from runs_service.storage.errors import storage_errors
from runs_service.storage.rows import to_utc
from runs_service.storage.run_writer import sqlite_write_lock
from runs_service.storage.tables import schedule_states, schedule_ticks

logger = logging.getLogger(__name__)

# Claims kept per schedule (older ones are deleted when a newer one is stored).
KEEP_TICKS = 100


class ClaimOutcome(enum.Enum):
    CLAIMED = "claimed"
    ALREADY_CLAIMED = "already_claimed"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class TickClaim:
    schedule: str
    tick_time: datetime
    run_id: str
    replica: str


@dataclass(frozen=True, slots=True)
class ClaimResult:
    outcome: ClaimOutcome
    # The claim that holds the tick (ours or the earlier one); None when PAUSED.
    claim: TickClaim | None


@dataclass(frozen=True, slots=True)
class ScheduleState:
    schedule: str
    paused: bool = False
    changed_by: str = ""
    changed_time: datetime | None = None
    last_tick: TickClaim | None = None


class ScheduleRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._is_sqlite = engine.dialect.name == "sqlite"
        self._lock: asyncio.Lock | None = sqlite_write_lock(engine) if self._is_sqlite else None
        self._write_engine = engine.execution_options(**SQLITE_WRITE_OPTIONS) if self._is_sqlite else engine
        dialect_insert: Any = sqlite_insert if self._is_sqlite else pg_insert
        self._insert_tick = (
            dialect_insert(schedule_ticks)
            .on_conflict_do_nothing(index_elements=[schedule_ticks.c.schedule, schedule_ticks.c.tick_time])
            .returning(schedule_ticks.c.run_id)
        )
        by_schedule = schedule_ticks.c.schedule == bindparam("schedule")
        self._select_tick = select(schedule_ticks).where(by_schedule, schedule_ticks.c.tick_time == bindparam("tick"))
        self._select_paused = select(schedule_states.c.paused).where(
            schedule_states.c.schedule == bindparam("schedule")
        )
        # The tick time of the KEEP_TICKS-th latest claim: everything older goes.
        oldest_kept = (
            select(schedule_ticks.c.tick_time)
            .where(by_schedule)
            .order_by(schedule_ticks.c.tick_time.desc())
            .offset(KEEP_TICKS - 1)
            .limit(1)
            .scalar_subquery()
        )
        self._prune = delete(schedule_ticks).where(by_schedule, schedule_ticks.c.tick_time < oldest_kept)
        self._upsert_state = dialect_insert(schedule_states)

    async def claim_tick(self, claim: TickClaim) -> ClaimResult:
        """CLAIMED when this claim is the first for its tick, ALREADY_CLAIMED (with the earlier claim) otherwise,
        PAUSED (nothing stored) when the schedule is paused."""
        async with storage_errors(
            "claim schedule tick", write=True, schedule=claim.schedule, tick=claim.tick_time.isoformat()
        ):
            if self._lock is None:
                return await self._claim(claim)
            async with self._lock:
                return await self._claim(claim)

    async def _claim(self, claim: TickClaim) -> ClaimResult:
        params = {"schedule": claim.schedule, "tick": claim.tick_time}
        async with self._write_engine.begin() as conn:
            if (await conn.execute(self._select_paused, params)).scalar():
                return ClaimResult(ClaimOutcome.PAUSED, None)
            inserted = await conn.execute(
                self._insert_tick,
                {
                    "schedule": claim.schedule,
                    "tick_time": claim.tick_time,
                    "run_id": claim.run_id,
                    "replica": claim.replica,
                    "claimed_time": datetime.now(UTC),
                },
            )
            if inserted.first() is not None:
                await conn.execute(self._prune, {"schedule": claim.schedule})
                logger.info(
                    "schedule tick claimed",
                    extra={"schedule": claim.schedule, "tick": claim.tick_time.isoformat(), "run_id": claim.run_id},
                )
                return ClaimResult(ClaimOutcome.CLAIMED, claim)
            row = (await conn.execute(self._select_tick, params)).mappings().first()
        if row is None:  # pruned between the insert and the read: only possible for a tick far in the past
            return ClaimResult(ClaimOutcome.ALREADY_CLAIMED, None)
        return ClaimResult(ClaimOutcome.ALREADY_CLAIMED, _claim_from_row(row))

    async def states(self, schedules: Sequence[str]) -> list[ScheduleState]:
        """The state of `schedules` (all when empty) that have one, in schedule order."""
        async with storage_errors("list schedule states"), self._engine.connect() as conn:
            paused = await self._pause_rows(conn, schedules)
            latest = await self._latest_ticks(conn, schedules)
        names = sorted(paused.keys() | latest.keys())
        return [
            ScheduleState(
                schedule=name,
                paused=bool(paused[name]["paused"]) if name in paused else False,
                changed_by=paused[name]["changed_by"] if name in paused else "",
                changed_time=to_utc(paused[name]["changed_time"]) if name in paused else None,
                last_tick=latest.get(name),
            )
            for name in names
        ]

    async def set_paused(self, schedule: str, paused: bool, changed_by: str) -> ScheduleState:
        values = {"schedule": schedule, "paused": paused, "changed_by": changed_by, "changed_time": datetime.now(UTC)}
        statement = self._upsert_state.values(values).on_conflict_do_update(
            index_elements=[schedule_states.c.schedule],
            set_={"paused": paused, "changed_by": changed_by, "changed_time": values["changed_time"]},
        )
        async with storage_errors("set schedule paused", write=True, schedule=schedule):
            if self._lock is None:
                await self._execute_write(statement)
            else:
                async with self._lock:
                    await self._execute_write(statement)
        logger.info("schedule paused" if paused else "schedule resumed", extra={"schedule": schedule, "by": changed_by})
        (state,) = await self.states([schedule])
        return state

    async def _execute_write(self, statement: Any) -> None:
        async with self._write_engine.begin() as conn:
            await conn.execute(statement)

    async def _pause_rows(self, conn: AsyncConnection, schedules: Sequence[str]) -> dict[str, Any]:
        query = select(schedule_states)
        if schedules:
            query = query.where(schedule_states.c.schedule.in_(list(schedules)))
        return {row["schedule"]: row for row in (await conn.execute(query)).mappings()}

    async def _latest_ticks(self, conn: AsyncConnection, schedules: Sequence[str]) -> dict[str, TickClaim]:
        latest = select(schedule_ticks.c.schedule, func.max(schedule_ticks.c.tick_time).label("tick_time")).group_by(
            schedule_ticks.c.schedule
        )
        if schedules:
            latest = latest.where(schedule_ticks.c.schedule.in_(list(schedules)))
        newest = latest.subquery()
        query = select(schedule_ticks).join(
            newest,
            (schedule_ticks.c.schedule == newest.c.schedule) & (schedule_ticks.c.tick_time == newest.c.tick_time),
        )
        return {row["schedule"]: _claim_from_row(row) for row in (await conn.execute(query)).mappings()}


def _claim_from_row(row: Any) -> TickClaim:
    return TickClaim(
        schedule=row["schedule"], tick_time=to_utc(row["tick_time"]), run_id=row["run_id"], replica=row["replica"]
    )
