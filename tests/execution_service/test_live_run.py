"""LiveRun: watchers replay and follow a run; the run waits (briefly) until they passed each step on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from agentrun_core.domain import ExecutionStep, FinalResponse
from execution_service.engine.events import RunEvent, RunStartedEvent, StepEvent
from execution_service.engine.live_run import LiveRun


def _live() -> LiveRun:
    started = RunStartedEvent("r1", "agent", "v1", "test", datetime.now(UTC), "", "alice")
    return LiveRun(run_id="r1", user="alice", started=started)


def _step(sequence: int) -> ExecutionStep:
    return ExecutionStep(run_id="r1", sequence=sequence, time=datetime.now(UTC), payload=FinalResponse(text="x"))


async def test_handed_off_returns_at_once_without_watchers() -> None:
    live = _live()
    live.append_step(_step(1))
    t0 = time.perf_counter()
    await live.handed_off(timeout_s=1.0)
    assert time.perf_counter() - t0 < 0.5


async def test_handed_off_waits_until_the_watcher_took_the_step() -> None:
    live = _live()
    taken: list[int] = []
    watcher = live.follow()
    assert (await anext(watcher)) is live.started

    async def consume() -> None:
        async for event in watcher:
            assert isinstance(event, StepEvent)
            taken.append(event.step.sequence)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)  # the watcher now waits for events
    live.append_step(_step(1))
    live.append_step(_step(2))
    await live.handed_off(timeout_s=10.0)
    assert taken == [1, 2]
    task.cancel()


async def test_a_watcher_that_does_not_read_is_waited_for_once() -> None:
    live = _live()
    watcher = live.follow()
    await anext(watcher)

    async def take() -> RunEvent:
        return await anext(watcher)

    next_event = asyncio.create_task(take())
    await asyncio.sleep(0)
    live.append_step(_step(1))  # taken by the pending anext
    await asyncio.sleep(0)
    assert next_event.done()
    live.append_step(_step(2))  # the watcher never asks for the next event (a client that does not read)
    t0 = time.perf_counter()
    await live.handed_off(timeout_s=0.05)
    assert time.perf_counter() - t0 >= 0.04
    live.append_step(_step(3))
    t0 = time.perf_counter()
    await live.handed_off(timeout_s=0.05)  # lagging: not waited for again
    assert time.perf_counter() - t0 < 0.04
    await watcher.aclose()
    assert live._cursors == []
