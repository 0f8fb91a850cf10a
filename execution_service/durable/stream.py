"""A durable run's event stream: DBOS `write_stream` / `read_stream` under the workflow id (the run id).

Layout of stream `STREAM_KEY`: offset 0 is RunStarted, offset N is the step of sequence N, then RunFinished, then
DBOS's close marker. Every entry is a serialized WatchRunResponse (ExecuteAgentResponse has the same wire format), so
a replica that follows a run it does not execute sends the bytes it reads, and WatchRun(from_sequence=N) starts
reading at offset N.

Writes are checkpointed workflow operations: a resumed run replays them without writing twice. They happen in the
run's own task, in order, whenever the run flushes (after each model call, each tool call's start and end, before
each checkpointed step): a step is written before any client sees it, so a client that saw step N and reconnects
elsewhere with from_sequence N + 1 misses nothing and sees nothing twice.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from agentrun.execution.v1 import execution_service_pb2 as pb
from dbos import DBOS
from dbos._error import DBOSStreamTimeoutError

from agentrun_core.domain import ExecutionStep
from agentrun_core.proto_convert import step_from_pb, step_to_pb
from execution_service.api.convert import event_response
from execution_service.engine.events import EncodedEvent, RunEvent, RunFinishedEvent, RunStartedEvent, StepEvent

log = logging.getLogger(__name__)

STREAM_KEY = "events"
# How long reading the stream of a run being resumed waits for more entries before it takes what it read as the
# whole prefix (the run's own workflow is the only writer, and it is here, replaying).
PREFIX_READ_TIMEOUT_S = 0.2
# How long a look at whether a run finished waits for more entries after the last one there is.
FINISHED_READ_TIMEOUT_S = 0.05


def encode_event(event: RunEvent) -> bytes:
    return event_response(pb.WatchRunResponse, event).SerializeToString()


@dataclass(frozen=True, slots=True)
class StreamPrefix:
    """What a run's stream held when its workflow resumed: RunStarted and the steps, in order."""

    started: pb.RunStarted | None = None
    steps: tuple[ExecutionStep, ...] = ()


async def read_prefix(run_id: str) -> StreamPrefix:
    """The entries already in the run's stream (called by the run's own workflow when it resumes). Read outside the
    workflow's context: inside it, DBOS would make the read a checkpointed operation of the workflow."""
    return await asyncio.create_task(_read_prefix(run_id), context=contextvars.Context())


async def _read_prefix(run_id: str) -> StreamPrefix:
    started: pb.RunStarted | None = None
    steps: list[ExecutionStep] = []
    try:
        async for value in DBOS.read_stream_async(run_id, STREAM_KEY, timeout_seconds=PREFIX_READ_TIMEOUT_S):
            message = pb.WatchRunResponse.FromString(value)
            kind = message.WhichOneof("event")
            if kind == "run_started":
                started = message.run_started
            elif kind == "step":
                steps.append(step_from_pb(message.step))
    except DBOSStreamTimeoutError:
        pass  # read everything there is
    return StreamPrefix(started, tuple(steps))


@dataclass
class StreamWriter:
    """Writes a run's events to its durable stream, in the run's own task, in order. `written` is called with each
    event once it is durable (the local LiveRun then passes it to this replica's watchers)."""

    run_id: str
    written: Callable[[RunEvent], None]
    _pending: deque[RunEvent] = field(default_factory=deque)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def put(self, event: RunEvent) -> None:
        self._pending.append(event)

    def put_step(self, step: ExecutionStep) -> None:
        self._pending.append(StepEvent(step, step_to_pb(step).SerializeToString()))

    async def flush(self) -> None:
        """Writes every pending event (each one a checkpointed operation of the workflow)."""
        async with self._lock:
            while self._pending:
                event = self._pending[0]
                await DBOS.write_stream_async(STREAM_KEY, encode_event(event))
                self._pending.popleft()
                self.written(event)

    async def close(self) -> None:
        await self.flush()
        await DBOS.close_stream_async(STREAM_KEY)


@dataclass
class RemoteRun:
    """A run this replica does not execute, followed through its durable stream (WatchRun on any replica).
    `started` is its RunStarted (offset 0), which `follow` sends first."""

    run_id: str
    user: str
    started: bytes
    is_finished: bool = False

    async def follow(self, from_sequence: int = 0) -> AsyncGenerator[RunEvent]:
        yield EncodedEvent(self.started)
        async for value in DBOS.read_stream_async(self.run_id, STREAM_KEY, offset=max(from_sequence, 1)):
            final = pb.WatchRunResponse.FromString(value).WhichOneof("event") == "run_finished"
            yield EncodedEvent(value, final=final)
            if final:
                self.is_finished = True
                return


async def has_finished(run_id: str) -> bool:
    """Whether the run's stream holds its RunFinished (its workflow may still be recording its own end)."""
    last = b""
    try:
        async for value in DBOS.read_stream_async(run_id, STREAM_KEY, timeout_seconds=FINISHED_READ_TIMEOUT_S):
            last = value
    except DBOSStreamTimeoutError:
        pass  # the run goes on: its stream is not closed
    return bool(last) and pb.WatchRunResponse.FromString(last).WhichOneof("event") == "run_finished"


async def remote_run(run_id: str, wait_s: float = 5.0) -> RemoteRun | None:
    """The run as its stream shows it, or None when no workflow of that id has written its RunStarted within
    `wait_s` (a workflow that just started writes it first)."""
    if await DBOS.get_workflow_status_async(run_id) is None:
        return None
    try:
        value = await DBOS.read_stream_offset_async(run_id, STREAM_KEY, 0, timeout_seconds=wait_s)
    except DBOSStreamTimeoutError:
        log.warning("a durable run has no RunStarted in its stream", extra={"run_id": run_id})
        return None
    started = pb.WatchRunResponse.FromString(value).run_started
    return RemoteRun(run_id=run_id, user=started.user, started=value)


__all__ = [
    "STREAM_KEY",
    "RemoteRun",
    "RunFinishedEvent",
    "RunStartedEvent",
    "StreamPrefix",
    "StreamWriter",
    "read_prefix",
    "remote_run",
]
