"""Durable mode polls its queues when woken (execution_service.durable.queue_wakeups), not only on a timer: with the
timer at 30 s, a run still starts at once, a queued run starts as soon as the slot frees, and a cancelled queued run
ends at once. The pieces alone: PollWait (what DBOS's queue worker loop waits on) and QueueBell (the coalesced NOTIFY
to the other replicas); the one-statement queue entry with limits past 32 bits. The same over replica processes,
woken by another replica's NOTIFY: test_queue_over_replicas.py."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from execution_service.durable.admission import DurableAdmission, QueueLimits
from execution_service.durable.queue_wakeups import PollWait, QueueBell
from execution_service.durable.replicas import ReplicaHeartbeat
from execution_service.durable.runtime import libpq_url
from execution_service.durable.schema import ensure_schema
from tests.execution_service.e2e.test_admission_queue import AGENTS, event_kind, next_event, rest_of
from tests.support.model_gate import Gate
from tests.support.stack import running_stack

# Far beyond every wait below: a run that starts within them was started by a wake, not by the timer.
TIMER_S = 30.0
WOKEN_WITHIN_S = 10.0


@pytest.mark.postgres
@pytest.mark.timeout(120)
async def test_with_the_timer_at_30_s_runs_start_and_end_when_the_replica_is_woken(
    tmp_path: Path, database_url: str
) -> None:
    gate = Gate()
    settings: dict[str, Any] = {
        "execution_database_url": database_url,
        "replica_id": "woken-replica",
        "max_concurrent_runs": 1,
        "queue_polling_interval_s": TIMER_S,
    }
    async with running_stack(tmp_path, AGENTS, **settings) as stack:
        stack.gemini.set_responder(gate.respond)
        # A run entering the queue here wakes this replica's poller: it starts at once.
        first_stream = aiter(
            stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="wait"))
        )
        started = await next_event(first_stream, WOKEN_WITHIN_S)
        assert event_kind(started) == "run_started"
        # Two more wait for the only slot; cancelling one moves it to the ending queue, where it starts and ends.
        waiting = []
        for task in ("second", "third"):
            stream = aiter(stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task=task)))
            head = await next_event(stream)
            assert event_kind(head) == "run_queued"
            waiting.append((stream, head.run_queued.run_id))
        (second, _), (third, third_id) = waiting
        await stack.execution_stub().CancelRun(ex.CancelRunRequest(run_id=third_id))
        ended = await asyncio.wait_for(rest_of(third), WOKEN_WITHIN_S)
        assert ended[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED

        # The slot frees when the first run's workflow ends: the replica is woken and the second starts.
        gate.open()
        assert (await rest_of(first_stream))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert event_kind(await next_event(second, WOKEN_WITHIN_S)) == "run_started"
        assert (await rest_of(second))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED


def test_a_poll_wait_returns_for_a_poll_at_its_timeout_or_when_woken() -> None:
    wait = PollWait(min_gap_s=0.1)
    began = time.monotonic()
    assert wait.wait(0.05) is False  # the timeout passed: poll
    assert 0.04 <= time.monotonic() - began < 1

    threading.Timer(0.05, wait.wake).start()
    began = time.monotonic()
    assert wait.wait(30) is False  # woken: poll at once
    assert time.monotonic() - began < 5

    wait.wake()
    began = time.monotonic()
    assert wait.wait(30) is False  # a wake that came while no one waited is kept
    assert time.monotonic() - began < 5


def test_woken_polls_come_at_once_for_a_burst_then_one_per_gap() -> None:
    wait = PollWait(min_gap_s=0.3, burst=2)
    polled = []
    began = time.monotonic()
    for _ in range(4):
        wait.wake()
        assert wait.wait(30) is False
        polled.append(time.monotonic() - began)
    assert polled[1] < 0.2  # the burst: two at once
    assert polled[2] >= 0.25 and polled[3] - polled[2] >= 0.25  # then one per gap
    assert polled[3] < 10


def test_a_woken_poll_is_followed_by_one_more_and_each_runs_after_before_poll() -> None:
    turns: list[float] = []
    wait = PollWait(min_gap_s=0.2, before_poll=lambda: turns.append(time.monotonic()))
    wait.wake()
    began = time.monotonic()
    assert wait.wait(30) is False  # woken
    assert wait.wait(30) is False  # the follow-up, one gap later, unwoken
    assert 0.15 <= time.monotonic() - began < 10
    began = time.monotonic()
    assert wait.wait(0.5) is False  # no second follow-up: the timeout
    assert time.monotonic() - began >= 0.45
    assert len(turns) == 3


def test_a_follow_up_poll_takes_no_token_so_the_next_wake_polls_at_once() -> None:
    # One run after another on an idle replica: its entry wakes a poll, the follow-up comes a gap later, the next
    # run's entry wakes another. Only woken polls spend the bucket: the next entry must not wait for a token.
    wait = PollWait(min_gap_s=0.3, burst=1)
    for _ in range(3):
        wait.wake()
        began = time.monotonic()
        assert wait.wait(30) is False  # woken: at once
        assert time.monotonic() - began < 0.2
        assert wait.wait(30) is False  # the follow-up, a gap later


def test_a_replica_alone_makes_no_follow_up_poll() -> None:
    alone = True
    wait = PollWait(min_gap_s=0.1, follow_up_when=lambda: not alone)
    wait.wake()
    assert wait.wait(30) is False  # woken
    began = time.monotonic()
    assert wait.wait(0.5) is False  # no follow-up: the timeout
    assert time.monotonic() - began >= 0.45
    alone = False  # another replica heartbeats now: they may contend
    wait.wake()
    assert wait.wait(30) is False
    began = time.monotonic()
    assert wait.wait(30) is False  # the follow-up, a gap later
    assert time.monotonic() - began < 5


@pytest.mark.postgres
async def test_the_heartbeat_tells_whether_another_replica_is_alive(database_url: str) -> None:
    url = libpq_url(database_url)
    await ensure_schema(url)
    one = ReplicaHeartbeat(url, "alive-one", interval_s=1, takeover_timeout_s=30)
    other = ReplicaHeartbeat(url, "alive-other", interval_s=1, takeover_timeout_s=30)
    await one.beat()
    assert one.others_alive is False
    await other.beat()
    assert other.others_alive is True
    await one.beat()
    assert one.others_alive is True
    await other.stop()  # marks itself silent (heartbeat at the epoch): gone for the others' next beat
    await one.beat()
    assert one.others_alive is False


@pytest.mark.postgres
async def test_limits_beyond_32_bits_still_enter_the_queue(database_url: str) -> None:
    url = libpq_url(database_url)
    await ensure_schema(url)
    limits = QueueLimits(
        per_replica=2**31, global_limit=2**33, max_queued=2**40, queue_timeout_s=0, polling_interval_s=1.0
    )
    admission = DurableAdmission(url, limits)
    await admission.open()
    try:
        assert await admission.enter("run-with-big-limits", b"queued") is False  # room: it does not wait
    finally:
        await admission.close()


def test_a_stopped_poll_wait_ends_the_loop_at_once() -> None:
    wait = PollWait(min_gap_s=0.1)
    assert not wait.is_set()
    threading.Timer(0.05, wait.stop).start()
    began = time.monotonic()
    assert wait.wait(30) is True
    assert wait.is_set()
    assert time.monotonic() - began < 5
    assert wait.wait(30) is True  # and stays stopped


async def test_a_bell_coalesces_a_burst_of_rings_and_rings_again_for_a_later_entry() -> None:
    sent: list[float] = []

    async def send() -> None:
        sent.append(time.monotonic())

    bell = QueueBell(send, min_gap_s=0.2)
    bell.ring()
    await asyncio.sleep(0.05)
    assert len(sent) == 1  # sent at once
    for _ in range(100):
        bell.ring()
    await asyncio.sleep(0.05)
    assert len(sent) == 1  # rings after a send wait for the gap
    await asyncio.sleep(0.3)
    assert len(sent) == 2  # and become one more after it
    assert sent[1] - sent[0] >= 0.19
    await asyncio.sleep(0.3)
    bell.ring()
    await asyncio.sleep(0.05)
    assert len(sent) == 3
    await bell.close()


async def test_a_bell_whose_send_fails_logs_it_and_rings_again(caplog: pytest.LogCaptureFixture) -> None:
    calls = 0

    async def send() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("database gone")

    bell = QueueBell(send, min_gap_s=0.01)
    bell.ring()
    await asyncio.sleep(0.05)
    bell.ring()
    await asyncio.sleep(0.05)
    assert calls == 2
    assert "could not tell the other replicas" in caplog.text
    await bell.close()
