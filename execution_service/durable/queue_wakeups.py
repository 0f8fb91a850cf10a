"""The shared queues' pollers, woken when there is something to take.

DBOS dequeues a queue by polling it on a timer (`dbos._queue.queue_worker_thread`): each poll is a few statements,
~5 ms of a replica's CPU. At 0.1 s that was most of an idle replica's CPU (10 replicas: 100 transactions a second on
an idle PostgreSQL), and a run entering an idle system still waited for the next poll to start. Here DBOS's own
worker loop runs for each of agentrun's queues in a thread of ours (DBOS is told not to poll them itself:
`DBOS.listen_queues`), and its wait between two polls ends early when the replica is woken (`QueueWorkers.wake`):

- a run entered the shared queue on this replica, or on another one (whose `QueueBell` rang: a NOTIFY);
- a workflow ended on this replica while a queued run could be waiting for its slot (the replica was full, or a
  global limit is set);
- a queued run was moved to the ending queue here (cancelled or past its queue timeout);
- this replica took over a silent replica's runs (DBOS puts them back in their queue), or just started.

Woken polls are rate-limited (a few at once, then one per `min_gap_s`: a burst of wakes costs no more polls than DBOS's
timer did at that interval), and a queue nothing wakes is polled every polling interval
(AGENTRUN_QUEUE_POLLING_INTERVAL_S), the safety net for a wake that was lost (a NOTIFY sent while a replica's listener
reconnected, a replica that died between enqueueing and ringing). What a poll takes, and the limits it honours, are
DBOS's, unchanged."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from agentrun_core.tasks import cancel_and_wait

if TYPE_CHECKING:
    from dbos import DBOS, Queue

log = logging.getLogger(__name__)

# How long `QueueWorkers.stop` waits for a worker in the middle of a poll (DBOS waits as long for its own).
STOP_TIMEOUT_S = 10.0
# How long a poller waits for the event loop to turn once before it polls anyway.
LOOP_TURN_TIMEOUT_S = 1.0


class PollWait:
    """What DBOS's queue worker loop waits on between two polls, in place of its stop event: `wait(timeout)` returns
    True once stopped, False when it is time to poll: the timeout passed, or `wake` was called. Woken polls are
    rate-limited by a token bucket: `burst` polls at once, then one per `min_gap_s` (a replica woken by every run of
    a burst polls no more often than a timer at `min_gap_s` would, and an idle one polls at once when woken). A woken
    poll is followed by one more `min_gap_s` later, which takes no token (the next run's wake must not wait for it; in
    a burst the next woken poll comes first and stands for it): replicas woken together (a NOTIFY) contend for the
    same rows, and DBOS leaves a claim that lost to "the next poll"; only while `follow_up_when()` (other replicas are
    alive: alone, a replica contends with nobody, and a poll costs ~10 ms of its CPU). `before_poll` runs on the
    worker's thread before each poll. Thread-safe: `wake` and `stop` may be called from any thread."""

    def __init__(
        self,
        min_gap_s: float,
        burst: int = 3,
        before_poll: Callable[[], None] = lambda: None,
        follow_up_when: Callable[[], bool] = lambda: True,
    ) -> None:
        self._min_gap_s = min_gap_s
        self._burst = burst
        self._before_poll = before_poll
        self._follow_up_when = follow_up_when
        self._tokens = float(burst)
        self._refilled = time.monotonic()
        self._follow_up_at: float | None = None
        self._stopped = threading.Event()
        self._woken = threading.Event()

    def is_set(self) -> bool:
        return self._stopped.is_set()

    def wake(self) -> None:
        self._woken.set()

    def stop(self) -> None:
        self._stopped.set()
        self._woken.set()

    def wait(self, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._follow_up_at is not None:
            deadline = self._follow_up_at if deadline is None else min(deadline, self._follow_up_at)
            self._follow_up_at = None
        woken = False
        while not self._stopped.is_set():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            if self._woken.wait(remaining):
                # Cleared before the poll: a wake that comes during the poll is one for the next.
                self._woken.clear()
                delay = self._until_token()
                if delay > 0 and self._stopped.wait(delay):
                    return True
                woken = True
                break
        if self._stopped.is_set():
            return True
        if woken:
            # Only woken polls take a token: a follow-up or a timer's poll must not make the next wake wait (in a
            # burst, the next woken poll comes before the follow-up would and stands for it).
            self._take_token()
            if self._follow_up_when():
                self._follow_up_at = time.monotonic() + self._min_gap_s
        self._before_poll()
        return self._stopped.is_set()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(float(self._burst), self._tokens + (now - self._refilled) / self._min_gap_s)
        self._refilled = now

    def _until_token(self) -> float:
        """Seconds until a poll may run (0: now)."""
        self._refill()
        return 0.0 if self._tokens >= 1 else (1 - self._tokens) * self._min_gap_s

    def _take_token(self) -> None:
        self._refill()
        self._tokens = max(self._tokens - 1, 0.0)


class QueueWorkers:
    """One thread per queue running DBOS's queue worker loop on a PollWait. Start after DBOS launched and the queue
    is registered, from the event loop DBOS runs the workflows on; stop before DBOS is destroyed."""

    def __init__(self, *, min_gap_s: float) -> None:
        self._min_gap_s = min_gap_s
        self._workers: dict[str, tuple[threading.Thread, PollWait]] = {}
        self._follow_up_when: Callable[[], bool] = lambda: True

    def follow_up_only_if(self, condition: Callable[[], bool]) -> None:
        """Woken polls are followed by one more only while `condition()` (PollWait): other replicas are alive."""
        self._follow_up_when = condition

    def _follows_up(self) -> bool:
        return self._follow_up_when()  # read at each woken poll: the condition may be set after the workers start

    def start(self, dbos: DBOS, queue: Queue) -> None:
        loop = asyncio.get_running_loop()

        def let_the_loop_turn() -> None:
            """Before a poll, the loop runs once: a workflow the previous poll dispatched registers itself as running
            on its first turn, and DBOS counts this replica's running workflows from that registry (back-to-back
            polls could otherwise claim past AGENTRUN_MAX_CONCURRENT_RUNS)."""
            if poll_wait.is_set():
                return
            # A loop this busy, or stopping: poll anyway (DBOS's own count is the bound, as before).
            with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=LOOP_TURN_TIMEOUT_S)

        poll_wait = PollWait(self._min_gap_s, before_poll=let_the_loop_turn, follow_up_when=self._follows_up)
        poll_wait.wake()  # the first poll at once: runs waiting already (recovered at launch) need no timer
        thread = threading.Thread(
            target=_poll_until_stopped,
            args=(poll_wait, dbos, queue),
            name=f"agentrun-queue-{queue.name}",
            daemon=True,
        )
        thread.start()
        self._workers[queue.name] = (thread, poll_wait)
        log.info("polling a durable queue when woken", extra={"queue": queue.name, "min_gap_s": self._min_gap_s})

    def wake(self, *queue_names: str) -> None:
        """The named queues (all without a name) poll now, or soon after a burst of polls. Cheap; callable from any
        thread."""
        for name, (_, poll_wait) in self._workers.items():
            if not queue_names or name in queue_names:
                poll_wait.wake()

    def stop_polling(self, queue_name: str) -> None:
        """The named queue is polled no more here (its worker ends after the poll it may be in): the other replicas
        take its runs. Does not wait for the worker; `stop` joins it."""
        worker = self._workers.get(queue_name)
        if worker is not None:
            worker[1].stop()
            log.info("no longer polling a durable queue", extra={"queue": queue_name})

    def stop(self) -> None:
        for _, poll_wait in self._workers.values():
            poll_wait.stop()
        for thread, _ in self._workers.values():
            thread.join(timeout=STOP_TIMEOUT_S)
            if thread.is_alive():
                log.warning(
                    "a durable queue's poller did not stop in time",
                    extra={"poller": thread.name, "waited_s": STOP_TIMEOUT_S},
                )
        self._workers.clear()


def _poll_until_stopped(poll_wait: PollWait, dbos: DBOS, queue: Queue) -> None:
    # DBOS's worker loop, the one its own queue thread starts for every queue it listens to.
    from dbos._queue import queue_worker_thread

    try:
        queue_worker_thread(poll_wait, dbos, queue)  # type: ignore[arg-type]  # DBOS calls only is_set() and wait()
    except Exception:
        log.exception(
            "a durable queue's poller failed: runs of this queue start on other replicas only",
            extra={"queue": queue.name},
        )
        return
    if not poll_wait.is_set():
        log.error(
            "a durable queue's poller stopped: runs of this queue start on other replicas only",
            extra={"queue": queue.name},
        )


class QueueBell:
    """Tells the other replicas that runs entered the shared queue (`send`: a NOTIFY). `ring` returns at once; rings
    that come while one is sent, or within `min_gap_s` after, are one more ring after that: a burst of entries costs
    at most one NOTIFY per `min_gap_s`, each entry is announced within about that. A failed send is logged; the
    replicas' idle polls still find the run."""

    def __init__(self, send: Callable[[], Awaitable[None]], *, min_gap_s: float) -> None:
        self._send = send
        self._min_gap_s = min_gap_s
        self._rung = False
        self._ringer: asyncio.Task[None] | None = None

    def ring(self) -> None:
        self._rung = True
        if self._ringer is None or self._ringer.done():
            self._ringer = asyncio.get_running_loop().create_task(self._ring(), name="durable-queue-bell")

    async def close(self) -> None:
        ringer, self._ringer = self._ringer, None
        await cancel_and_wait(ringer)

    async def _ring(self) -> None:
        while self._rung:
            self._rung = False
            try:
                await self._send()
            except Exception:
                log.exception("could not tell the other replicas that a run entered the queue; they find it later")
            await asyncio.sleep(self._min_gap_s)
