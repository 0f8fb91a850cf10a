"""Schedule tick claims and pause state on both backends: of many replicas claiming one tick at once, exactly one
wins; a paused schedule stores nothing; only the latest claims are kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from agentrun_core.ids import new_run_id
from runs_service.storage.repository import RunRepository
from runs_service.storage.rows import to_utc
from runs_service.storage.schedules import KEEP_TICKS, ClaimOutcome, ScheduleRepository, TickClaim

TICK = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)


def claim(schedule: str, tick: datetime, replica: str) -> TickClaim:
    return TickClaim(schedule=schedule, tick_time=tick, run_id=new_run_id(), replica=replica)


async def test_one_of_many_concurrent_claims_of_a_tick_wins(repo: RunRepository) -> None:
    schedules = ScheduleRepository(repo.engine)
    claims = [claim("report/morning", TICK, f"replica-{i}") for i in range(12)]
    results = await asyncio.gather(*(schedules.claim_tick(c) for c in claims))
    winners = [r for r in results if r.outcome is ClaimOutcome.CLAIMED]
    assert len(winners) == 1
    winner = winners[0].claim
    assert winner is not None and winner in claims
    # Every loser is told whose claim holds the tick.
    assert all(r.claim == winner for r in results if r.outcome is ClaimOutcome.ALREADY_CLAIMED)
    # A claim of the next tick, or of the same tick of another schedule, is a claim of its own.
    assert (await schedules.claim_tick(claim("report/morning", TICK + timedelta(days=1), "x"))).outcome is (
        ClaimOutcome.CLAIMED
    )
    assert (await schedules.claim_tick(claim("report/evening", TICK, "x"))).outcome is ClaimOutcome.CLAIMED
    (state,) = await schedules.states(["report/morning"])
    assert state.last_tick is not None and state.last_tick.tick_time == TICK + timedelta(days=1)
    assert not state.paused


async def test_a_paused_schedule_claims_nothing_until_resumed(repo: RunRepository) -> None:
    schedules = ScheduleRepository(repo.engine)
    paused = await schedules.set_paused("report/morning", True, "alice")
    assert paused.paused and paused.changed_by == "alice" and paused.changed_time is not None
    result = await schedules.claim_tick(claim("report/morning", TICK, "r1"))
    assert result.outcome is ClaimOutcome.PAUSED and result.claim is None
    (state,) = await schedules.states(["report/morning"])
    assert state.paused and state.last_tick is None  # nothing was stored for the paused tick
    resumed = await schedules.set_paused("report/morning", False, "bob")
    assert not resumed.paused and resumed.changed_by == "bob"
    assert (await schedules.claim_tick(claim("report/morning", TICK, "r1"))).outcome is ClaimOutcome.CLAIMED
    # Unknown schedules have no state; an empty list asks for all.
    assert await schedules.states(["nobody/never"]) == []
    assert [s.schedule for s in await schedules.states([])] == ["report/morning"]


async def test_only_the_latest_claims_are_kept(repo: RunRepository) -> None:
    schedules = ScheduleRepository(repo.engine)
    ticks = [TICK + timedelta(seconds=i) for i in range(KEEP_TICKS + 5)]
    for tick in ticks:
        assert (await schedules.claim_tick(claim("fast/every-second", tick, "r1"))).outcome is ClaimOutcome.CLAIMED
    async with repo.engine.connect() as conn:
        from sqlalchemy import func, select

        from runs_service.storage.tables import schedule_ticks

        kept = (await conn.execute(select(func.min(schedule_ticks.c.tick_time), func.count()))).one()
    assert kept[1] == KEEP_TICKS and to_utc(kept[0]) == ticks[-KEEP_TICKS]
    (state,) = await schedules.states(["fast/every-second"])
    assert state.last_tick is not None and state.last_tick.tick_time == ticks[-1]
