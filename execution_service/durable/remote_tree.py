"""Following a durable run that another replica executes, with its sub-agents' runs: the run's own stream
(stream.RemoteRun) merged with the streams of the child runs its tool calls start, each child's steps marked with
their depth under the run (a grandchild's 2...), as they arrive. The replica that executes a run relays its
children's steps to its local watchers itself (LiveRun.parent); this is the same view for a watcher on any other
replica.

The merge is made by the reader: the run's stream keeps only its own steps (offset N = step N), so a child's steps are
durable once, in the child's stream. A watcher that starts from a step (`from_sequence` N > 1) gets the steps of the
children that were running at the run's step N - 1 from that step's time on, then everything new. The run's
RunFinished comes after its children's last steps (a parent ends after its children).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agentrun.execution.v1 import execution_service_pb2 as pb
from dbos import DBOS

from execution_service.durable.stream import RemoteRun, remote_run
from execution_service.engine.events import EncodedEvent, RunEvent

log = logging.getLogger(__name__)

# How long a child's stream is looked for (its workflow starts just after its parent's call is recorded; a child that
# could not start never has one).
CHILD_APPEAR_S = 30.0
# How long the run's RunFinished waits for the last steps of its children's streams.
CHILDREN_DRAIN_S = 5.0
_POLL_S = 0.1
QUEUE_SIZE = 256


def _message(event: RunEvent) -> pb.WatchRunResponse | None:
    return pb.WatchRunResponse.FromString(event.data) if isinstance(event, EncodedEvent) else None


def _started_child(message: pb.WatchRunResponse) -> str:
    """The child run a step's sub-agent call starts ("" for any other step)."""
    if message.WhichOneof("event") != "step" or not message.step.HasField("tool_call"):
        return ""
    return message.step.tool_call.child_run_id


def _ended_child(message: pb.WatchRunResponse) -> str:
    """The child run whose end a step's sub-agent call result reports ("" for any other step)."""
    if message.WhichOneof("event") != "step" or not message.step.HasField("tool_result"):
        return ""
    return message.step.tool_result.child_run_id


class RemoteTree:
    """A RemoteRun whose `follow` carries its descendants' steps too (engine.live_run.FollowedRun)."""

    def __init__(self, root: RemoteRun) -> None:
        self._root = root

    @property
    def run_id(self) -> str:
        return self._root.run_id

    @property
    def user(self) -> str:
        return self._root.user

    @property
    def is_finished(self) -> bool:
        return self._root.is_finished

    def follow(self, from_sequence: int = 0) -> AsyncGenerator[RunEvent]:
        return self._merged(_Merge(), from_sequence)

    def follow_past(self, last_received: Mapping[str, int]) -> AsyncGenerator[RunEvent]:
        """Every stream of the tree read from its start, each run's steps past `last_received` sent (exactly once
        whatever order the client received them in: the merge's order is the reader's)."""
        return self._merged(_Merge(last_received), 0)

    async def _merged(self, merge: _Merge, from_sequence: int) -> AsyncGenerator[RunEvent]:
        root = asyncio.create_task(merge.root(self._root, from_sequence))
        try:
            while (item := await merge.queue.get()) is not None:
                if isinstance(item, _ReaderFailed):
                    raise item.error  # a stream that cannot be read ends the watch with its error, not a hang
                yield item
        finally:
            for task in (root, *merge.readers.values()):
                task.cancel()


@dataclass(frozen=True)
class _ReaderFailed:
    """A reader's error (the execution database down, ...): the watch ends with it."""

    error: Exception


class _Merge:
    """One watcher's merge: the events to send, in order, and a reader task per descendant's stream."""

    def __init__(self, last_received: Mapping[str, int] | None = None) -> None:
        # Bounded: a watcher that reads slowly holds the readers back, rather than its events piling up here.
        # None: the run's stream ended (its RunFinished was put); _ReaderFailed: a reader's error.
        self.queue: asyncio.Queue[RunEvent | _ReaderFailed | None] = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.readers: dict[str, asyncio.Task[None]] = {}
        # Steps the client has (WatchRun.last_received): passed over, their sub-agent calls still followed.
        self.last_received = last_received or {}

    def _received(self, message: pb.WatchRunResponse) -> bool:
        if message.WhichOneof("event") != "step":
            return False
        return message.step.sequence <= self.last_received.get(message.step.run_id, 0)

    async def root(self, run: RemoteRun, from_sequence: int) -> None:
        await self._reporting_failure(self._root(run, from_sequence))
        await self.queue.put(None)

    async def child(self, run_id: str, depth: int, since: datetime | None) -> None:
        await self._reporting_failure(self._child(run_id, depth, since))

    async def _reporting_failure(self, reading: Coroutine[Any, Any, None]) -> None:
        """Runs a reader; its error goes to the watcher (the reader's task is cancelled, not failed, when the watcher
        leaves: its cancellation is not caught)."""
        try:
            await reading
        except Exception as exc:
            log.warning("a durable run's stream could not be read", exc_info=True)
            await self.queue.put(_ReaderFailed(exc))

    async def _root(self, run: RemoteRun, from_sequence: int) -> None:
        # From a later step: the steps before it are passed over (RunStarted is sent at once), and the children
        # running at that step are followed from its time on. Read in one pass, which waits for nothing: a run that
        # ends before the step (or a client asking past its end) still ends the watch with RunFinished.
        passing = from_sequence > 1
        running: dict[str, None] = {}
        since: datetime | None = None
        async for event in run.follow(1 if passing else from_sequence, self.last_received):
            message = _message(event)
            if passing and message is not None and message.WhichOneof("event") in ("step", "run_finished"):
                if message.WhichOneof("event") == "step" and message.step.sequence < from_sequence:
                    if child := _started_child(message):
                        running[child] = None
                    elif ended := _ended_child(message):
                        running.pop(ended, None)
                    since = message.step.time.ToDatetime()
                    continue
                passing = False
                for run_id in running:
                    self._follow(run_id, 1, since)
            if message is not None:
                if message.WhichOneof("event") == "run_finished":
                    await self._drained(list(self.readers))
                await self._before(message, 1, None)
                if self._received(message):
                    continue
            await self.queue.put(event)

    async def _child(self, run_id: str, depth: int, since: datetime | None) -> None:
        run = await _appeared(run_id)
        if run is None:
            return
        async for event in run.follow(0):
            message = _message(event)
            if message is None or message.WhichOneof("event") != "step":
                continue
            await self._before(message, depth + 1, since)
            if (since is not None and message.step.time.ToDatetime() < since) or self._received(message):
                continue
            message.step.depth = depth
            await self.queue.put(EncodedEvent(message.SerializeToString()))

    async def _before(self, message: pb.WatchRunResponse, child_depth: int, since: datetime | None) -> None:
        """Before a step goes out: a sub-agent call's start starts reading its child's stream; its result waits
        until the child's stream was read to its end (the child's steps come before its parent's result)."""
        if child := _started_child(message):
            self._follow(child, child_depth, since)
        elif ended := _ended_child(message):
            reader = self.readers.get(ended)
            if reader is not None and not reader.done() and await DBOS.get_workflow_status_async(ended) is None:
                reader.cancel()  # a child that could not start (CHILD_NOT_STARTED) has no stream
            await self._drained([ended])

    def _follow(self, run_id: str, depth: int, since: datetime | None) -> None:
        if run_id not in self.readers:
            self.readers[run_id] = asyncio.create_task(self.child(run_id, depth, since))

    async def _drained(self, run_ids: list[str]) -> None:
        """Waits (at most CHILDREN_DRAIN_S) for these children's streams to be read to their end."""
        pending = [self.readers[r] for r in run_ids if r in self.readers and not self.readers[r].done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=CHILDREN_DRAIN_S)
            if late:
                log.warning("sub-agent runs' streams did not end with their call", extra={"children": len(late)})


async def _appeared(run_id: str) -> RemoteRun | None:
    """The child's run once its workflow wrote its RunStarted (None if it never does within CHILD_APPEAR_S)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CHILD_APPEAR_S
    while loop.time() < deadline:
        run = await remote_run(run_id, wait_s=1.0)
        if run is not None:
            return run
        await asyncio.sleep(_POLL_S)
    return None
