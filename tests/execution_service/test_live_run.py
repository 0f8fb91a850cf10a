"""LiveRun: watchers replay and follow a run; the run waits (briefly) until they passed each step on."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

from agentrun.runs.v1 import run_pb2

from agentrun_core.domain import ExecutionStep, FinalResponse, RunStatus, TokenUsage
from agentrun_core.proto_convert import step_to_pb
from execution_service.engine.events import RunEvent, RunFinishedEvent, RunStartedEvent, StepEvent
from execution_service.engine.live_run import LiveRun, with_depth


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


async def test_a_watcher_that_leaves_beside_another_at_the_same_step_leaves_the_other_followed() -> None:
    # Two caught-up watchers stand at the same step (an ExecuteAgent client and a WatchRun client, say). When one
    # leaves, the other must stay a watcher: waited for by the run and ending cleanly with RunFinished (the first
    # to leave once removed the other's position, whose own end then failed: UNKNOWN for its client).
    live = _live()
    staying, leaving = live.follow(), live.follow()
    await anext(staying)
    await anext(leaving)
    live.append_step(_step(1))
    assert isinstance(await anext(staying), StepEvent) and isinstance(await anext(leaving), StepEvent)
    await leaving.aclose()
    live.append_step(_step(2))
    t0 = time.perf_counter()
    await live.handed_off(timeout_s=0.05)  # the staying watcher has not taken step 2: it is waited for
    assert time.perf_counter() - t0 >= 0.04
    _finished(live)
    rest = await asyncio.wait_for(_collect(staying), 1.0)
    assert [type(e) for e in rest] == [StepEvent, RunFinishedEvent]
    assert live._cursors == []


def _finished(live: LiveRun) -> None:
    now = datetime.now(UTC)
    live.finish(RunFinishedEvent("r1", RunStatus.COMPLETED, "x", TokenUsage(), timedelta(0), now, 1, 0, None, None))


async def test_a_watcher_past_the_end_of_a_finished_run_gets_run_finished() -> None:
    live = _live()
    live.append_step(_step(1))
    live.append_step(_step(2))
    _finished(live)
    for from_sequence in (0, 1, 2, 3, 4, 1000):
        events = [e async for e in live.follow(from_sequence)]
        steps = [e.step.sequence for e in events if isinstance(e, StepEvent)]
        assert events[0] is live.started and events[-1] is live.finished, from_sequence
        assert steps == [s for s in (1, 2) if s >= from_sequence], from_sequence


async def test_a_watcher_waiting_past_the_end_of_a_live_run_gets_run_finished_when_it_ends() -> None:
    live = _live()
    live.append_step(_step(1))
    watcher = asyncio.create_task(_collect(live.follow(10)))
    await asyncio.sleep(0.01)
    live.append_step(_step(2))
    _finished(live)
    events = await asyncio.wait_for(watcher, 1.0)
    assert events[0] is live.started and events[-1] is live.finished and len(events) == 2


async def _collect(events: AsyncIterator[RunEvent]) -> list[RunEvent]:
    return [event async for event in events]


async def test_a_run_cancelled_while_waiting_for_its_watchers_leaves_no_waiter_behind() -> None:
    live = _live()
    watcher = live.follow()
    await anext(watcher)

    async def take() -> RunEvent:
        return await anext(watcher)

    pending = asyncio.create_task(take())
    await asyncio.sleep(0)
    live.append_step(_step(1))
    await asyncio.sleep(0)
    assert pending.done()
    live.append_step(_step(2))  # the watcher does not ask for it
    waiting = asyncio.create_task(live.handed_off(timeout_s=10.0))
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert live._waiters == []
    await watcher.aclose()


async def test_a_finished_run_keeps_its_steps_but_not_their_serialized_copies() -> None:
    live = _live()
    step = _step(1)
    live.append_step(step, b"serialized")
    seen = [event async for event in _until_first_step(live)]
    assert seen[-1] == StepEvent(step, b"serialized")  # a live stream sends the journal's bytes
    now = datetime.now(UTC)
    live.finish(RunFinishedEvent("r1", RunStatus.COMPLETED, "x", TokenUsage(), timedelta(0), now, 0, 0, None, None))
    replayed = [event async for event in live.follow()]
    assert [type(e).__name__ for e in replayed] == ["RunStartedEvent", "StepEvent", "RunFinishedEvent"]
    assert replayed[1] == StepEvent(step)  # the step itself, without its serialized copy


async def _until_first_step(live: LiveRun) -> AsyncIterator[RunEvent]:
    async for event in live.follow():
        yield event
        if isinstance(event, StepEvent):
            return


def test_with_depth_sets_the_depth_of_a_serialized_step_without_reserializing_it() -> None:
    encoded = step_to_pb(_step(4)).SerializeToString()
    parsed = run_pb2.ExecutionStep.FromString(with_depth(encoded, 2))
    assert (parsed.depth, parsed.sequence, parsed.final_response.text) == (2, 4, "x")


async def test_a_childs_steps_reach_its_ancestors_at_their_depth_and_replays_start_after_the_own_step() -> None:
    root = _live()
    child_started = RunStartedEvent("r2", "agent", "v1", "test", datetime.now(UTC), "", "alice", parent_run_id="r1")
    child = LiveRun(run_id="r2", user="alice", started=child_started, parent=root)
    grandchild = LiveRun(run_id="r3", user="alice", started=child_started, parent=child)

    def step(run_id: str, sequence: int) -> ExecutionStep:
        return ExecutionStep(run_id=run_id, sequence=sequence, time=datetime.now(UTC), payload=FinalResponse("x"))

    root.append_step(step("r1", 1))
    child.append_step(step("r2", 1))
    grandchild.append_step(step("r3", 1))
    root.append_step(step("r1", 2))
    child.append_step(step("r2", 2))
    shown = [(e.step.run_id, e.step.sequence, e.step.depth) for e in root._events if isinstance(e, StepEvent)]
    assert shown == [("r1", 1, 0), ("r2", 1, 1), ("r3", 1, 2), ("r1", 2, 0), ("r2", 2, 1)]
    assert [e.step.depth for e in child._events if isinstance(e, StepEvent)] == [0, 1, 0]

    root.finish(
        RunFinishedEvent("r1", RunStatus.COMPLETED, "", TokenUsage(), timedelta(0), datetime.now(UTC), 1, 0, None, None)
    )
    replayed = [e async for e in root.follow(from_sequence=2)][1:]
    assert [(e.step.run_id, e.step.sequence) for e in replayed if isinstance(e, StepEvent)] == [
        ("r2", 1),
        ("r3", 1),
        ("r1", 2),
        ("r2", 2),
    ]
    assert isinstance(replayed[-1], RunFinishedEvent)


async def test_a_watcher_from_a_step_not_reached_yet_is_sent_nothing_before_it() -> None:
    root = _live()
    child_started = RunStartedEvent("r2", "agent", "v1", "test", datetime.now(UTC), "", "alice", parent_run_id="r1")
    child = LiveRun(run_id="r2", user="alice", started=child_started, parent=root)

    def step(run_id: str, sequence: int) -> ExecutionStep:
        return ExecutionStep(run_id=run_id, sequence=sequence, time=datetime.now(UTC), payload=FinalResponse("x"))

    root.append_step(step("r1", 1))
    watcher = root.follow(from_sequence=3)  # after the root's step 2, which has not happened
    assert isinstance(await anext(watcher), RunStartedEvent)
    pending = asyncio.ensure_future(anext(watcher))
    child.append_step(step("r2", 1))  # before the root's step 2: not sent
    root.append_step(step("r1", 2))
    child.append_step(step("r2", 2))  # after it: sent
    event = await asyncio.wait_for(pending, 5)
    assert isinstance(event, StepEvent) and (event.step.run_id, event.step.sequence) == ("r2", 2)
    await watcher.aclose()
