"""cancel_and_wait: the tasks end, the caller's own cancellation is not swallowed, an earlier failure is logged."""

from __future__ import annotations

import asyncio
import logging

import pytest

from agentrun_core.tasks import cancel_and_wait, complete_despite_cancellation


async def test_cancels_every_task_and_waits_for_its_cleanup() -> None:
    cleaned: list[str] = []

    async def worker(name: str) -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits: still done when cancel_and_wait returns
            cleaned.append(name)

    tasks = [asyncio.create_task(worker(name)) for name in ("a", "b")]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks, None)
    assert sorted(cleaned) == ["a", "b"]
    assert all(task.cancelled() for task in tasks)


async def test_the_callers_own_cancellation_propagates() -> None:
    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        finally:
            await asyncio.sleep(0.5)  # slow cleanup: the caller is cancelled while it waits for it

    target = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    stopper = asyncio.create_task(cancel_and_wait(target))
    await asyncio.sleep(0.05)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    await asyncio.wait([target])


async def test_a_task_that_had_failed_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> None:
        raise RuntimeError("disk on fire")

    task = asyncio.create_task(broken(), name="the-broken-one")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="agentrun_core.tasks"):
        await cancel_and_wait(task)
    [record] = [r for r in caplog.records if r.name == "agentrun_core.tasks"]
    assert record.task == "the-broken-one"  # type: ignore[attr-defined]
    assert record.exc_info is not None and "disk on fire" in str(record.exc_info[1])


async def test_work_that_must_end_ends_and_its_caller_gets_the_result_through_cancellations() -> None:
    steps: list[str] = []

    async def record_the_end() -> str:
        await asyncio.sleep(0.1)
        steps.append("recorded")
        return "ended"

    caller = asyncio.create_task(complete_despite_cancellation(record_the_end(), what="the test's end"))
    for _ in range(3):  # a second CancelRun, a stray cancellation from a library's cancel scope...
        await asyncio.sleep(0.02)
        caller.cancel()
    assert await caller == "ended"
    assert steps == ["recorded"]
    assert caller.cancelling() == 0  # withdrawn: nothing later in the caller sees a cancellation pending


async def test_work_that_must_end_gives_way_to_a_stopping_service_and_still_ends() -> None:
    ended = asyncio.Event()

    async def record_the_end() -> None:
        await asyncio.sleep(0.1)
        ended.set()

    caller = asyncio.create_task(
        complete_despite_cancellation(record_the_end(), what="the test's end", give_way=lambda: True)
    )
    await asyncio.sleep(0.02)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(ended.wait(), 5)
