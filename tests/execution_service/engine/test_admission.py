"""The admission queue alone: slots, first-in first-out hand-off, the bound, and places given up."""

from __future__ import annotations

import asyncio

import pytest

from execution_service.engine.admission import AdmissionQueue
from execution_service.errors import QueueFull


async def test_slots_then_queue_then_refusal() -> None:
    queue = AdmissionQueue(max_running=2, max_queued=2)
    first, second = queue.enter(), queue.enter()
    assert first.admitted and second.admitted
    third, fourth = queue.enter(), queue.enter()
    assert (third.admitted, third.position, fourth.admitted, fourth.position) == (False, 1, False, 2)
    with pytest.raises(QueueFull) as refused:
        queue.enter()
    assert "AGENTRUN_MAX_QUEUED_RUNS=2" in refused.value.message
    assert (queue.running, queue.queued) == (2, 2)


async def test_a_freed_slot_goes_to_the_first_in_line_and_nobody_jumps_the_queue() -> None:
    queue = AdmissionQueue(max_running=1, max_queued=5)
    holder = queue.enter()
    waiting = [queue.enter() for _ in range(3)]
    waits = [asyncio.create_task(queue.wait(ticket)) for ticket in waiting]
    await asyncio.sleep(0)
    queue.leave(holder)
    late = queue.enter()  # arrives while others wait: queued behind them, even though a slot was just freed
    assert not late.admitted and late.position == 3
    await asyncio.wait_for(waits[0], 1)
    assert waiting[0].admitted and not waits[1].done()
    for ticket, wait in zip(waiting, waits, strict=True):
        await asyncio.wait_for(wait, 1)
        queue.leave(ticket)
    await asyncio.wait_for(queue.wait(late), 1)
    queue.leave(late)
    assert (queue.running, queue.queued) == (0, 0)


async def test_giving_up_a_place_or_a_granted_slot_frees_it() -> None:
    queue = AdmissionQueue(max_running=1, max_queued=5)
    holder = queue.enter()
    timed_out, next_one = queue.enter(), queue.enter()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await queue.wait(timed_out)
    queue.leave(timed_out)  # gave up its place: the next one moves up
    assert queue.queued == 1
    queue.leave(holder)
    assert next_one.admitted  # granted, though its task never awaited: leaving passes the slot on
    queue.leave(next_one)
    queue.leave(next_one)  # idempotent
    assert (queue.running, queue.queued) == (0, 0)
