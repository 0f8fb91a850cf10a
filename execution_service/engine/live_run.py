"""A run in memory: its event log, which any number of watchers replay and then follow as it grows.

A child run (sub-agent) also hands each of its steps to its parent's log, marked with its depth under that run, so a
client following the parent sees the whole tree as it happens (a grandchild's steps reach the root through the
child). Only the run's own steps are journaled and stored with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Protocol

from agentrun_core.domain import ExecutionStep, RunStatus
from agentrun_core.ids import run_id_problem
from execution_service.engine.control import RunControl
from execution_service.engine.events import RunEvent, RunFinishedEvent, RunQueuedEvent, RunStartedEvent, StepEvent
from execution_service.errors import InvalidRequest

# How long the run waits, after emitting a step, for its watchers to send it.
HANDOFF_TIMEOUT_S = 0.005
# ExecutionStep.depth as a protobuf key: field 5, varint.
_DEPTH_KEY = bytes([5 << 3])


def with_depth(encoded: bytes, depth: int) -> bytes:
    """A serialized ExecutionStep with its depth set to `depth` (1..127). A scalar field that appears again later in
    the bytes wins when they are parsed (protobuf encoding rules), so appending it is enough: the step is not
    serialized again."""
    if not 0 < depth < 128:
        raise ValueError(f"depth {depth} is out of range")
    return encoded + _DEPTH_KEY + bytes([depth])


class FollowedRun(Protocol):
    """A run a stream can follow: a LiveRun here, or (durable mode) a run another replica executes."""

    @property
    def run_id(self) -> str: ...

    @property
    def user(self) -> str: ...

    @property
    def is_finished(self) -> bool: ...

    def follow(self, from_sequence: int = 0) -> AsyncIterator[RunEvent]: ...

    def follow_past(self, last_received: Mapping[str, int]) -> AsyncIterator[RunEvent]: ...


@dataclass(slots=True, eq=False)
class _Cursor:
    """One watcher's position: the number of events (after RunStarted) it has sent (asked for the next one after).
    Compared by identity (eq=False): two watchers at the same position are two cursors, and a watcher that leaves
    removes its own."""

    taken: int
    # Missed a handoff deadline (e.g. its client does not read): not waited for again until it caught up.
    lagging: bool = False


@dataclass
class LiveRun:
    run_id: str
    user: str
    # None while the run waits in the admission queue (and for good when it ends there).
    started: RunStartedEvent | None
    # Set when the run had to wait for a slot.
    queued: RunQueuedEvent | None = None
    control: RunControl = field(default_factory=RunControl)
    task: asyncio.Task[None] | None = None
    cancel_requested: bool = False
    # Whether an immediate cancel may cancel its task now: only while it waits for a slot or runs its loop, where
    # the cancellation ends it CANCELLED. Outside (before, or while its end is recorded) the cancel is only noted
    # (cancel_requested: the loop does not begin, or it ends anyway); a cancellation there would cut the run's task
    # short and its end with it (a durable run's workflow then stayed PENDING, its end never recorded).
    interruptible: bool = False
    # The status its loop ended with, while its end is recorded (a cancel then changes nothing, and says so).
    ending: RunStatus | None = None
    # Why it was cancelled, when not by a client (a sub-agent's run whose parent ended first).
    cancel_message: str = ""
    # The run whose tool call started this one (a sub-agent's run); it receives this run's steps too.
    parent: LiveRun | None = None
    # The request that started it (engine.run_request.request_digest; "" when not known): a retry must match it.
    request_digest: str = ""
    # Every event after RunStarted, in order: the steps, then RunFinished.
    _events: list[StepEvent | RunFinishedEvent] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    finished: RunFinishedEvent | None = None
    _cursors: list[_Cursor] = field(default_factory=list)
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)
    # Where each of the run's own steps is in _events (its descendants' steps are interleaved).
    _own_positions: list[int] = field(default_factory=list)

    @contextlib.contextmanager
    def cancellable(self) -> Iterator[None]:
        """Where an immediate cancel cancels the run's task (`interruptible`): its wait for a slot, its loop. An
        immediate cancel that came before raises CancelledError at once."""
        self.interruptible = True
        try:
            if self.cancel_requested and not self.control.stop_after_turn:
                raise asyncio.CancelledError("the run was cancelled before it began")
            yield
        finally:
            self.interruptible = False

    def start(self, event: RunStartedEvent) -> None:
        """The queued run starts executing."""
        self.started = event
        self._wake()

    async def changed(self) -> None:
        """Returns at the run's next change: its start, a step, its end."""
        await self._changed.wait()

    @property
    def step_count(self) -> int:
        """The number of steps appended so far (they are numbered 1..step_count)."""
        return sum(1 for event in self._events if isinstance(event, StepEvent))

    @property
    def agent_name(self) -> str:
        """The run's agent ("" for a run dequeued here that has not started yet: unknown until it does)."""
        event = self.started or self.queued
        return event.agent_name if event is not None else ""

    @property
    def is_queued(self) -> bool:
        return self.started is None and self.finished is None

    def append_step(self, step: ExecutionStep, encoded: bytes | None = None) -> None:
        """`encoded`: the step already serialized (StepEvent.encoded)."""
        self._own_positions.append(len(self._events))
        self._append(StepEvent(step, encoded))
        if self.parent is not None:
            self.parent.append_descendant_step(step, encoded, 1)

    def append_descendant_step(self, step: ExecutionStep, encoded: bytes | None, depth: int) -> None:
        """A step of a run `depth` levels under this one, as it happens: shown to this run's watchers, passed up."""
        if self.finished is not None:
            return  # a parent ends after its children; nothing of theirs can follow its RunFinished
        shown = dataclasses.replace(step, depth=depth)
        self._append(StepEvent(shown, None if encoded is None else with_depth(encoded, depth)))
        if self.parent is not None:
            self.parent.append_descendant_step(step, encoded, depth + 1)

    def attach_to_parent(self, parent: LiveRun) -> None:
        """Makes `parent` receive this run's steps (and its descendants') from now on, after the ones so far: in the
        durable mode, a parent resumed after a crash finds its sub-agent's run already running."""
        if self.parent is not None:
            return
        for event in self._events:
            if isinstance(event, StepEvent):
                own = event.step.run_id == self.run_id
                parent.append_descendant_step(event.step, event.encoded, 1 if own else event.step.depth + 1)
        self.parent = parent

    def finish(self, event: RunFinishedEvent) -> None:
        self.finished = event
        # A finished run stays in memory for a while (WatchRun, idempotent retries): without the steps' serialized
        # copies, which only spared live streams a conversion.
        self._events = [StepEvent(e.step) if isinstance(e, StepEvent) and e.encoded else e for e in self._events]
        self._append(event)

    def _append(self, event: StepEvent | RunFinishedEvent) -> None:
        self._events.append(event)
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    @property
    def is_finished(self) -> bool:
        return self.finished is not None

    def _handed_off(self) -> bool:
        end = len(self._events)
        return all(c.taken >= end or c.lagging for c in self._cursors)

    async def handed_off(self, timeout_s: float = HANDOFF_TIMEOUT_S) -> None:
        """Returns once every watcher has sent every event emitted so far: a gRPC stream asks its watcher for the
        next event when the write of the last one is done. The run's next piece of work on the event loop (MCP
        requests, outbox writes) then no longer holds up those sends. Returns at once without watchers; a watcher
        slower than `timeout_s` (a client that does not read) is not waited for again until it has caught up."""
        if self._handed_off():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_later(timeout_s, self._deadline, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            if waiter in self._waiters:  # cancelled while waiting
                self._waiters.remove(waiter)

    def _deadline(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done():
            return
        end = len(self._events)
        for cursor in self._cursors:
            if cursor.taken < end:
                cursor.lagging = True
        self._moved(None)

    def _moved(self, cursor: _Cursor | None) -> None:
        if cursor is not None and cursor.lagging and cursor.taken >= len(self._events):
            cursor.lagging = False
        if self._waiters and self._handed_off():
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _position_after(self, run_id: str, sequence: int) -> int | None:
        """Where the stream goes on after step `sequence` of run `run_id` (this run or a descendant): the index just
        after that step in _events; None while the stream has not carried it."""
        if run_id == self.run_id:
            return self._own_positions[sequence - 1] + 1 if sequence <= len(self._own_positions) else None
        for index, event in enumerate(self._events):
            if isinstance(event, StepEvent) and event.step.run_id == run_id and event.step.sequence == sequence:
                return index + 1
        return None

    def carries(self, run_id: str, sequence: int) -> bool:
        """Whether this run's stream has carried step `sequence` of run `run_id` (this run or a descendant)."""
        return self._position_after(run_id, sequence) is not None

    def follow(self, from_sequence: int = 0) -> AsyncGenerator[RunEvent]:
        """RunQueued (for a run that waited for a slot), RunStarted (once the run executes), then the stream from
        just after the run's own step from_sequence - 1 (its descendants' steps since then included; from the start
        for 0 or 1), then each new event until RunFinished."""
        return self.follow_after(self.run_id, max(from_sequence - 1, 0))

    async def follow_past(self, last_received: Mapping[str, int]) -> AsyncGenerator[RunEvent]:
        """RunQueued and RunStarted as `follow` sends them, then every event of the stream but the steps a client
        received already: a step of run R with a sequence up to `last_received[R]` (R: this run or a descendant; a
        run not named: none received), in the stream's order, then each new event until RunFinished."""
        async for event in self._head():
            yield event
        unseen = self._from(0, lambda step: step.sequence > last_received.get(step.run_id, 0))
        async with aclosing(unseen) as events:  # closed with this generator: its cursor goes at once
            async for event in events:
                yield event

    async def _head(self) -> AsyncGenerator[RunEvent]:
        """RunQueued (for a run that waited for a slot; then its start is waited for), and RunStarted."""
        if self.queued is not None:
            yield self.queued
            while self.started is None and self.finished is None:
                await self._changed.wait()
        if self.started is not None:
            yield self.started

    async def _from(self, index: int, sends: Callable[[ExecutionStep], bool]) -> AsyncGenerator[RunEvent]:
        """The events from `index` on, each step only if `sends(step)`, then each new one until RunFinished."""
        cursor = _Cursor(taken=index)
        self._cursors.append(cursor)
        try:
            while True:
                if self.finished is not None:
                    # RunFinished is the last event: a watcher asking for steps past the end still gets it.
                    index = min(index, len(self._events) - 1)
                while index < len(self._events):
                    event = self._events[index]
                    index += 1
                    if not isinstance(event, StepEvent) or sends(event.step):
                        yield event
                    cursor.taken = index
                    self._moved(cursor)
                    if isinstance(event, RunFinishedEvent):
                        return
                await self._changed.wait()
        finally:
            self._cursors.remove(cursor)
            self._moved(cursor)

    async def follow_after(self, run_id: str, sequence: int) -> AsyncGenerator[RunEvent]:
        """RunQueued and RunStarted as `follow` sends them, then every event the stream carried or carries after step
        `sequence` of run `run_id` (this run, or a descendant whose steps the stream carries), each exactly once and
        in the stream's order: a client that received the stream up to that step and reattaches here misses nothing
        and receives nothing twice. Sequence 0 of this run: the whole stream. A step the stream has not carried yet
        is waited for (nothing before it is sent); a run that finished without it sends only its RunFinished."""
        async for event in self._head():
            yield event
        found = 0 if run_id == self.run_id and sequence <= 0 else self._position_after(run_id, sequence)
        # Not carried yet: the steps up to that one are passed over, not sent.
        waiting = found is None

        def sends(step: ExecutionStep) -> bool:
            nonlocal waiting
            if waiting:
                waiting = not (step.run_id == run_id and step.sequence == sequence)
                return False
            return True

        async with aclosing(self._from(len(self._events) if found is None else found, sends)) as events:
            async for event in events:
                yield event


# The most runs a WatchRun's last_received may name (a run tree's runs: far more than any agent starts).
MAX_LAST_RECEIVED = 10_000


def resumed(
    run: FollowedRun, from_sequence: int, from_run_id: str = "", last_received: Mapping[str, int] | None = None
) -> AsyncIterator[RunEvent]:
    """WatchRun's stream of `run`: from its own step `from_sequence` (`follow`), or, with `from_run_id` naming a
    descendant whose steps the stream carries, from just after that run's step from_sequence - 1 (`follow_after`),
    or past the steps `last_received` says a client received (`follow_past`, on any replica). Raises InvalidRequest
    for a descendant's step the stream has not carried (a client cannot have received it), and for a malformed
    last_received or one combined with the other two."""
    if last_received:
        return run.follow_past(_checked_last_received(last_received, from_sequence, from_run_id))
    if not from_run_id or from_run_id == run.run_id:
        return run.follow(from_sequence)
    problem = run_id_problem(from_run_id)
    if problem is not None:
        raise InvalidRequest("from_run_id", problem)
    if from_sequence < 2:
        raise InvalidRequest(
            "from_sequence",
            f"must be at least 2 with from_run_id {from_run_id} (the sequence after the last step received of that "
            f"run, a sub-agent's run whose steps this run's stream carries), got {from_sequence}",
        )
    if not isinstance(run, LiveRun):
        raise InvalidRequest(
            "from_run_id",
            f"run {run.run_id} is followed here through its durable stream (it executes, or executed, on another "
            "replica): reattaching after a sub-agent's step works through the replica that executes it; here, "
            "reattach with from_sequence alone (its sub-agents' steps since that step come again), or read a "
            "finished run from RunsService (GetRun)",
        )
    if not run.carries(from_run_id, from_sequence - 1):
        raise InvalidRequest(
            "from_run_id",
            f"step {from_sequence - 1} of run {from_run_id} is not in the stream of run {run.run_id}: name the run "
            "and the sequence + 1 of the last step received from this stream",
        )
    return run.follow_after(from_run_id, from_sequence - 1)


def _checked_last_received(last_received: Mapping[str, int], from_sequence: int, from_run_id: str) -> dict[str, int]:
    if from_sequence or from_run_id:
        raise InvalidRequest(
            "last_received", "names where to go on by itself: leave from_sequence and from_run_id unset with it"
        )
    if len(last_received) > MAX_LAST_RECEIVED:
        raise InvalidRequest("last_received", f"names {len(last_received)} runs, over the cap of {MAX_LAST_RECEIVED}")
    for run_id, sequence in last_received.items():
        problem = run_id_problem(run_id)
        if problem is not None:
            raise InvalidRequest("last_received", f"a key {problem}")
        if sequence < 0:
            raise InvalidRequest("last_received", f"run {run_id}: the sequence must not be negative, got {sequence}")
    return dict(last_received)
