"""GET /runs/{run_id}/events: a live run as server-sent events, from WatchRun.

The browser's EventSource reconnects by itself when the connection drops and sends the id of the last event it
received (Last-Event-ID): a step's id is its sequence, so the stream resumes with WatchRun(from_sequence = that + 1)
and no step is sent twice. `finished` is the last event (the page then closes the stream); `gone` means the run is
not live on ExecutionService (unknown, another user's, or long finished: the page offers the stored record);
`problem` means the stream broke (service down): the browser retries every RETRY_MS. `child_step` is a step of a
sub-agent's run (any depth) as it happens, linked to that run's page.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from agentrun_web.clients import Caller, ServiceCallError, Services
from agentrun_web.rendering import Renderer
from agentrun_web.security import caller_of, settings_of
from agentrun_web.views import live_events

log = logging.getLogger(__name__)

RETRY_MS = 1000
KEEPALIVE_S = 15.0
_END = object()
# Failures worth retrying (the browser reconnects after RETRY_MS); any other ends the live view with its message.
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.CANCELLED,
    }
)


def sse(event: str, data: dict[str, Any], *, event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.extend(f"data: {line}" for line in json.dumps(data, separators=(",", ":")).splitlines())
    return "\n".join(lines) + "\n\n"


def first_sequence(request: Request) -> int:
    """Where the stream starts: after the last event the browser has (Last-Event-ID), else `?from=`, else 0."""
    last = request.headers.get("last-event-id", "").strip()
    if last.isdigit():
        return int(last) + 1
    start = request.query_params.get("from", "").strip()
    return int(start) if start.isdigit() else 0


class LiveStreams:
    """The open event streams, so that shutting the console down ends them (instead of waiting for their runs)."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[object]] = set()

    def open(self) -> asyncio.Queue[object]:
        queue: asyncio.Queue[object] = asyncio.Queue()
        self._queues.add(queue)
        return queue

    def close(self, queue: asyncio.Queue[object]) -> None:
        self._queues.discard(queue)

    def end_all(self) -> None:
        for queue in self._queues:
            queue.put_nowait(_END)

    def __len__(self) -> int:
        return len(self._queues)


async def _pump(services: Services, caller: Caller, run_id: str, start: int, queue: asyncio.Queue[object]) -> None:
    try:
        async for event in services.execution.watch(caller, run_id, start):
            queue.put_nowait(event)
        queue.put_nowait(_END)
    except ServiceCallError as exc:
        queue.put_nowait(exc)


async def _events(request: Request, caller: Caller, run_id: str, start: int) -> AsyncIterator[str]:
    services: Services = request.app.state.services
    renderer: Renderer = request.app.state.renderer
    streams: LiveStreams = request.app.state.live_streams
    settings = settings_of(request)
    queue = streams.open()
    pump = asyncio.create_task(_pump(services, caller, run_id, start, queue))
    started: ex_pb2.RunStarted | None = None
    context = {"run_id": run_id, "from_sequence": start}
    log.info("live stream opened", extra=context)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if item is _END:
                return
            if isinstance(item, ServiceCallError):
                yield _failure(item, context)
                return
            assert isinstance(item, ex_pb2.WatchRunResponse)
            kind = item.WhichOneof("event")
            if kind == "run_started":
                started = item.run_started
                yield sse("started", live_events.started_event(started))
            elif kind == "step" and item.step.depth > 0 and started is not None:
                # A sub-agent run's step, carried in this stream: shown under the call that started it, without an
                # SSE id (the id a reconnecting browser resumes from is the run's own last step).
                yield sse("child_step", live_events.child_step_event(renderer, item.step, started.start_time))
            elif kind == "step" and started is not None:
                data = live_events.step_event(renderer, run_id, item.step, started.start_time)
                yield sse("step", data, event_id=item.step.sequence)
            elif kind == "run_finished" and started is not None:
                trace_link = settings.trace_link(started.trace_id)
                data = live_events.finished_event(renderer, started, item.run_finished, trace_link=trace_link)
                yield sse("finished", data)
                log.info("live stream: run finished", extra={**context, "status": data["status"]})
                return
            else:
                log.warning("live stream: unexpected event", extra={**context, "event": kind})
    finally:
        pump.cancel()
        streams.close(queue)
        log.info("live stream closed", extra=context)


def _failure(error: ServiceCallError, context: dict[str, Any]) -> str:
    if error.code is grpc.StatusCode.NOT_FOUND:
        log.info("live stream: the run is not live on ExecutionService", extra={**context, **error.log_context()})
        return sse(
            "gone",
            {"message": "This run is not live on ExecutionService (it ended a while ago, or runs elsewhere)."},
        )
    if error.code not in _RETRYABLE:
        log.warning("live stream refused", extra={**context, **error.log_context()})
        return sse("gone", {"message": f"{error.endpoint.service} answered {error.code.name}: {error.details}"})
    log.warning("live stream broke", extra={**context, **error.log_context()})
    endpoint = error.endpoint
    if error.unreachable:
        message = f"{endpoint.service} at {endpoint.target} is unreachable; retrying…"
    else:
        message = f"{endpoint.service} answered {error.code.name}: {error.details}; retrying…"
    return sse("problem", {"message": message})


async def run_events(request: Request) -> Response:
    caller = caller_of(request)
    run_id = request.path_params["run_id"]
    return StreamingResponse(
        _events(request, caller, run_id, first_sequence(request)),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
