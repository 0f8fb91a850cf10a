"""Live runs as server-sent events, from WatchRun: GET /live?watch=RUN_ID:FROM&... (several runs in one stream, each
event naming its run: the tabs of a browser share it through static/live-worker.js, so they hold one connection
between them) and GET /runs/{run_id}/events (one run, for a browser without SharedWorker).

A step's SSE id (one-run stream) is its sequence: an EventSource that reconnects by itself sends it back
(Last-Event-ID) and the stream resumes with WatchRun(from_sequence = that + 1); pages also ask with `from`.
`finished` is a run's last event; `gone` means the run is not live on ExecutionService (unknown, another user's, or
long finished: the page offers the stored record); `problem` means the stream broke (service down): the page shows
the message and asks again after a backoff. `child_step` (no SSE id) is a step of a sub-agent's run (any depth) as
it happens, linked to that run's page.
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
from agentrun_web.views.run_details import started_from_queued

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


async def _pump(services: Services, caller: Caller, run_id: str, start: int, queue: asyncio.Queue[object]) -> None:
    try:
        async for event in services.execution.watch(caller, run_id, start):
            queue.put_nowait(event)
        queue.put_nowait(_END)
    except ServiceCallError as exc:
        queue.put_nowait(exc)


# One event for the page: (event name, data, SSE id or None).
LiveEvent = tuple[str, dict[str, Any], int | None]


async def _run_events(request: Request, caller: Caller, run_id: str, start: int) -> AsyncIterator[LiveEvent | None]:
    """One run's events from WatchRun, until it finishes, is gone or the stream breaks; None every KEEPALIVE_S
    without one (the caller keeps the connection alive)."""
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
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
            except TimeoutError:
                yield None
                continue
            if item is _END:
                return
            if isinstance(item, ServiceCallError):
                yield _failure(item, context)
                return
            assert isinstance(item, ex_pb2.WatchRunResponse)
            kind = item.WhichOneof("event")
            if kind == "run_queued":
                # Until it starts (or ends in the queue), what the run is as far as RunQueued tells.
                started = started_from_queued(item.run_queued)
                yield "queued", live_events.queued_event(renderer, item.run_queued), None
            elif kind == "run_started":
                started = item.run_started
                yield "started", live_events.started_event(renderer, started), None
            elif kind == "step" and item.step.depth > 0 and started is not None:
                # A sub-agent run's step, carried in this stream: shown under the call that started it, without an
                # SSE id (the id a reconnecting browser resumes from is the run's own last step).
                yield "child_step", live_events.child_step_event(renderer, item.step, started.start_time), None
            elif kind == "step" and started is not None:
                data = live_events.step_event(renderer, run_id, item.step, started.start_time)
                yield "step", data, item.step.sequence
            elif kind == "run_finished" and started is not None:
                trace_link = settings.trace_link(started.trace_id)
                data = live_events.finished_event(renderer, started, item.run_finished, trace_link=trace_link)
                yield "finished", data, None
                log.info("live stream: run finished", extra={**context, "status": data["status"]})
                return
            else:
                log.warning("live stream: unexpected event", extra={**context, "event": kind})
    finally:
        pump.cancel()
        streams.close(queue)
        log.info("live stream closed", extra=context)


async def _events(request: Request, caller: Caller, run_id: str, start: int) -> AsyncIterator[str]:
    yield f"retry: {RETRY_MS}\n\n"
    async for item in _run_events(request, caller, run_id, start):
        if item is None:
            yield ": keep-alive\n\n"
        else:
            event, data, event_id = item
            yield sse(event, data, event_id=event_id)


def _failure(error: ServiceCallError, context: dict[str, Any]) -> LiveEvent:
    if error.code is grpc.StatusCode.NOT_FOUND:
        log.info("live stream: the run is not live on ExecutionService", extra={**context, **error.log_context()})
        message = "This run is not live on ExecutionService (it ended a while ago, or runs elsewhere)."
        return "gone", {"message": message}, None
    if error.code not in _RETRYABLE:
        log.warning("live stream refused", extra={**context, **error.log_context()})
        return "gone", {"message": f"{error.endpoint.service} answered {error.code.name}: {error.details}"}, None
    log.warning("live stream broke", extra={**context, **error.log_context()})
    endpoint = error.endpoint
    if error.unreachable:
        message = f"{endpoint.service} at {endpoint.target} is unreachable"
    else:
        message = f"{endpoint.service} answered {error.code.name}: {error.details}"
    return "problem", {"message": message}, None


async def run_events(request: Request) -> Response:
    caller = caller_of(request)
    run_id = request.path_params["run_id"]
    return StreamingResponse(
        _events(request, caller, run_id, first_sequence(request)),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


MAX_WATCHED_RUNS = 32


def watched_runs(request: Request) -> dict[str, int]:
    """`?watch=RUN_ID:FROM` (repeated): the runs a browser follows and the first sequence it needs of each."""
    runs: dict[str, int] = {}
    for value in request.query_params.getlist("watch")[:MAX_WATCHED_RUNS]:
        run_id, _, start = value.partition(":")
        if run_id:
            runs[run_id.strip()] = int(start) if start.strip().isdigit() else 0
    return runs


async def _shared_events(request: Request, caller: Caller, runs: dict[str, int]) -> AsyncIterator[str]:
    """Several runs' events in one stream (each event's data names its run): a browser's tabs share one connection
    (static/live-worker.js) instead of holding one each, which HTTP/1.1's six connections per host cannot afford."""
    merged: asyncio.Queue[tuple[str, LiveEvent | None] | None] = asyncio.Queue()

    async def follow(run_id: str, start: int) -> None:
        try:
            async for item in _run_events(request, caller, run_id, start):
                if item is not None:
                    merged.put_nowait((run_id, item))
        finally:
            merged.put_nowait((run_id, None))

    tasks = [asyncio.create_task(follow(run_id, start)) for run_id, start in runs.items()]
    open_runs = len(tasks)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        while open_runs:
            try:
                entry = await asyncio.wait_for(merged.get(), KEEPALIVE_S)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if entry is None:
                return
            run_id, item = entry
            if item is None:
                open_runs -= 1
                continue
            event, data, _ = item
            # No SSE id: one id cannot say where several runs are; the worker asks again with each run's next step.
            yield sse(event, {**data, "run": run_id})
        yield sse("idle", {})
    finally:
        for task in tasks:
            task.cancel()


async def shared_events(request: Request) -> Response:
    caller = caller_of(request)
    return StreamingResponse(
        _shared_events(request, caller, watched_runs(request)),
        media_type="text/event-stream",
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )
