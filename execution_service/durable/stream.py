"""A durable run's event stream: the entries of the run's journal (execution_service.durable.journal).

Layout: offset 0 is RunStarted, offset N is the step of sequence N, then RunFinished. A run that ends in the shared
queue without starting (cancelled, or its queue timeout) has its RunQueued at offset 0 instead, then its error step
and RunFinished (execution_service.durable.admission). Every entry is a serialized WatchRunResponse
(ExecuteAgentResponse has the same wire format), so a replica that follows a run it does not execute sends the bytes
it reads, and WatchRun(from_sequence=N) starts reading at offset N.

Each entry is written once: its offset is its key, so a resumed run that replays an entry writes nothing new. Writes
happen in the run's own task, in order, whenever the run flushes (after each model call, each tool call's start and
end, before each checkpointed call): a step is written before any client sees it, so a client that saw step N and
reconnects elsewhere with from_sequence N + 1 misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agentrun.execution.v1 import execution_service_pb2 as pb
from dbos import DBOS

from agentrun_core.domain import ExecutionStep, RunResumed, RunStatus
from agentrun_core.proto_convert import run_status_from_pb, step_from_pb, step_to_pb
from execution_service.api.convert import event_response
from execution_service.durable import journal
from execution_service.engine.events import (
    EncodedEvent,
    RunEvent,
    RunFinishedEvent,
    RunQueuedEvent,
    RunStartedEvent,
    StepEvent,
)
from execution_service.engine.live_run import LiveRun

log = logging.getLogger(__name__)

STREAM_KEY = "events"


def encode_event(event: RunEvent) -> bytes:
    return event_response(pb.WatchRunResponse, event).SerializeToString()


@dataclass(frozen=True, slots=True)
class StreamPrefix:
    """What a run's stream held when its workflow resumed: RunStarted and the steps, in order."""

    started: pb.RunStarted | None = None
    steps: tuple[ExecutionStep, ...] = ()

    def time_executed(self, start: datetime) -> timedelta:
        """How long the run executed before it stopped (its run timeout counts this much used): from `start` to its
        last step, less the gaps of its earlier resumptions (a RunResumed step's gap: the time it was stopped). The
        time a call in flight at a stop ran before the stop is not counted (when the replica died is not known):
        the call is made again and counts from then."""
        if not self.steps:
            return timedelta(0)
        stopped = sum((step.payload.gap for step in self.steps if isinstance(step.payload, RunResumed)), timedelta(0))
        return max(self.steps[-1].time - start - stopped, timedelta(0))


async def read_prefix(run_id: str) -> StreamPrefix:
    """The entries already in the run's stream (called by the run's own workflow when it resumes: the only writer
    of its stream, so what is there is the whole prefix)."""
    started: pb.RunStarted | None = None
    steps: list[ExecutionStep] = []
    for _, value in await journal.current().entries(run_id):
        message = pb.WatchRunResponse.FromString(value)
        kind = message.WhichOneof("event")
        if kind == "run_started":
            started = message.run_started
        elif kind == "step":
            steps.append(step_from_pb(message.step))
    return StreamPrefix(started, tuple(steps))


@dataclass
class StreamWriter:
    """Writes a run's events to its durable stream, in the run's own task, in order. `written` is called with each
    event once it is durable (the local LiveRun then passes it to this replica's watchers).

    Offsets: a step's is its sequence; any other event takes the offset after the last one written (RunStarted: 0,
    RunFinished: after the last step)."""

    run_id: str
    written: Callable[[RunEvent], None]
    _pending: deque[RunEvent] = field(default_factory=deque)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _next_offset: int = 0

    def put(self, event: RunEvent) -> None:
        self._pending.append(event)

    def put_step(self, step: ExecutionStep) -> None:
        self._pending.append(StepEvent(step, step_to_pb(step).SerializeToString()))

    async def flush(self) -> None:
        """Writes every pending event (one journal entry each; an entry a replay writes again stays as it was)."""
        async with self._lock:
            while self._pending:
                event = self._pending[0]
                offset = event.step.sequence if isinstance(event, StepEvent) else self._next_offset
                await journal.current().append(self.run_id, offset, encode_event(event))
                self._next_offset = offset + 1
                self._pending.popleft()
                self.written(event)

    async def close(self) -> None:
        """Writes what is pending (the stream ends with its RunFinished)."""
        await self.flush()


# How long a follower of a queued run waits for the first entry of its stream before it looks again whether this
# replica took the run (it then follows the run in memory).
FIRST_ENTRY_WAIT_S = 1.0


@dataclass
class RemoteRun:
    """A run followed through its durable stream: one another replica executes (WatchRun on any replica), or one
    waiting in the shared queue (execution_service.durable.admission). `queued`: its RunQueued (sent first, from its
    admission record); `started`: the first entry of its stream once it is there (RunStarted, or the RunQueued of a
    run that ended in the queue). `local`: this replica's run in memory, once this replica executes it; a follower of
    a queued run then follows that instead of reading the stream."""

    run_id: str
    user: str
    started: bytes | None
    queued: bytes | None = None
    local: Callable[[], LiveRun | None] | None = None
    is_finished: bool = False
    agent_name: str = ""

    async def follow(
        self, from_sequence: int = 0, last_received: Mapping[str, int] | None = None
    ) -> AsyncGenerator[RunEvent]:
        """The run's events from its step `from_sequence` (0 or 1: a watch from a later step is the tree reader's,
        remote_tree, which passes over the earlier steps itself and so ends even past the run's end); `last_received`
        is for a run followed in memory (remote_tree passes over the steps it names itself)."""
        if self.queued is not None:
            yield EncodedEvent(self.queued)
        first = self.started
        while first is None:
            local = self._local()
            if local is not None:
                events = local.follow_past(last_received) if last_received else local.follow(from_sequence)
                async for event in _without_queued(events):
                    yield event
                self.is_finished = local.is_finished
                return
            # Woken too when this replica starts the run (DurableRunManager.execute): then followed in memory, at
            # once, rather than once its RunStarted is written and notified.
            first = await first_entry(self.run_id, FIRST_ENTRY_WAIT_S, unless=lambda: self._local() is not None)
            if first is not None and await self._starts_here():
                first = None  # this replica took the run meanwhile: followed in memory
        kind = pb.WatchRunResponse.FromString(first).WhichOneof("event")
        if kind == "run_started" or (kind == "run_queued" and self.queued is None):
            yield EncodedEvent(first)
        async for value in read_entries(self.run_id, max(from_sequence, 1)):
            final = _is_run_finished(value)
            yield EncodedEvent(value, final=final)
            if final:
                self.is_finished = True
                return

    async def _starts_here(self) -> bool:
        """Whether this replica executes the run (it shows the run's RunStarted once it is written: the entry just
        read may come a moment before), waiting up to FIRST_ENTRY_WAIT_S for that."""
        if self._local() is not None:
            return True
        dequeued = self.local() if self.local is not None else None
        if dequeued is None or dequeued.is_finished:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_ENTRY_WAIT_S):
                while self._local() is None:
                    await dequeued.changed()
        return self._local() is not None

    def _local(self) -> LiveRun | None:
        """This replica's run in memory, once it executes (or ended) here."""
        local = self.local() if self.local is not None else None
        if local is None or (local.started is None and not local.is_finished):
            return None
        return local


async def _without_queued(events: AsyncIterator[RunEvent]) -> AsyncGenerator[RunEvent]:
    """The events of a run in memory, but its RunQueued (the follower sent it already)."""
    async for event in events:
        if not isinstance(event, RunQueuedEvent):
            yield event


async def finished_status(run_id: str, wait_s: float = 0.0) -> RunStatus | None:
    """The status in the run's RunFinished once its stream holds it (its workflow may still be recording its own
    end), waiting up to `wait_s` for it to be written (each new entry wakes the wait); None when it is not."""
    entries = journal.current()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    last = await entries.last(run_id)
    while True:
        if last is not None:
            message = pb.WatchRunResponse.FromString(last[1])
            if message.HasField("run_finished"):
                return run_status_from_pb(message.run_finished.status)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        after = last[0] + 1 if last is not None else 0
        value = await entries.entry(run_id, after, remaining)
        if value is None:
            return None
        last = (after, value)


async def read_entries(run_id: str, from_offset: int) -> AsyncGenerator[bytes]:
    """The run's stream from `from_offset` on, each entry once, in order, waiting for the entries to come (the caller
    stops at RunFinished)."""
    async with aclosing(journal.current().follow(run_id, from_offset)) as entries:
        async for _, value in entries:
            yield value


def _is_run_finished(value: bytes) -> bool:
    return pb.WatchRunResponse.FromString(value).WhichOneof("event") == "run_finished"


async def first_entry(run_id: str, wait_s: float, *, unless: Callable[[], bool] | None = None) -> bytes | None:
    """The first entry of the run's stream (RunStarted; RunQueued for a run that ended in the queue), or None when
    its workflow has written none within `wait_s` (or, woken, `unless()` holds: journal.Journal.wake)."""
    return await journal.current().entry(run_id, 0, wait_s, unless=unless)


async def remote_run(
    run_id: str,
    wait_s: float = 5.0,
    *,
    queued: bytes | None = None,
    local: Callable[[], LiveRun | None] | None = None,
) -> RemoteRun | None:
    """The run as its stream shows it, or None when no workflow of that id has written its first entry within
    `wait_s` (a workflow that just started writes it first). `queued`: the run's RunQueued from its admission record
    (a run in the shared queue has written nothing yet: it is found at once)."""
    if await DBOS.get_workflow_status_async(run_id) is None:
        return None
    if queued is not None:
        waiting = pb.WatchRunResponse.FromString(queued).run_queued
        first = await first_entry(run_id, 0)
        return RemoteRun(run_id, waiting.user, first, queued=queued, local=local, agent_name=waiting.agent_name)
    value = await first_entry(run_id, wait_s)
    if value is None:
        log.warning("a durable run has no RunStarted in its stream", extra={"run_id": run_id})
        return None
    message = pb.WatchRunResponse.FromString(value)
    head = message.run_started if message.HasField("run_started") else message.run_queued
    return RemoteRun(run_id=run_id, user=head.user, started=value, agent_name=head.agent_name)


__all__ = [
    "STREAM_KEY",
    "RemoteRun",
    "RunFinishedEvent",
    "RunStartedEvent",
    "StreamPrefix",
    "StreamWriter",
    "first_entry",
    "read_prefix",
    "remote_run",
]
