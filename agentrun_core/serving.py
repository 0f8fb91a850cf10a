"""Process lifecycle shared by both services."""

from __future__ import annotations

import asyncio
import functools
import signal
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentrun_core.echo import shown
from agentrun_core.grpc_decoding import add_servicer

# How long a call may wait inside gRPC before the server's event loop accepts it. gRPC's default, 30 s, cancels
# calls that wait longer with a bare CANCELLED (no message from the service, nothing logged): a replica whose loop is
# saturated by a burst (1,000 ExecuteAgent calls at once) accepts calls more slowly than they come, and the last
# ones were lost that way. A call waiting that long is served late instead; the client's own deadline still bounds
# it, and gRPC still sheds load with RESOURCE_EXHAUSTED when too many calls wait to be accepted (some of them past
# 1,000 waiting, every one past 3,000: its defaults).
MAX_UNACCEPTED_CALL_WAIT_S = 3600
SERVER_ACCEPT_OPTIONS: list[tuple[str, int]] = [
    ("grpc.server_max_unrequested_time_in_server", MAX_UNACCEPTED_CALL_WAIT_S),
]

_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
_SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


async def wait_for_stop_signal() -> None:
    """Returns at the first SIGINT or SIGTERM (handlers are removed again on return)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class HealthServicer(health_pb2_grpc.HealthServicer):
    """grpc.health.v1.Health, as grpc_health's asyncio HealthServicer (same Check, Watch, set and
    enter_graceful_shutdown), except that Watch streams end at shutdown.

    grpc_health's Watch never returns: at shutdown it sends NOT_SERVING and waits on, so every open Watch (a load
    balancer, a client's health checking) keeps `server.stop(grace)` waiting for the whole grace period. Here
    `enter_graceful_shutdown()` sets every service NOT_SERVING, each Watch sends that (or the status it has not sent
    yet) and then ends its stream with OK.
    """

    def __init__(self) -> None:
        self._status: dict[str, health_pb2.HealthCheckResponse.ServingStatus.ValueType] = {"": _SERVING}
        self._changed = asyncio.Condition()
        self._shutting_down = False

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {shown(request.service)}")
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext) -> None:
        """Sends the service's status now and at every change; ends after sending it once shutdown has begun."""
        sent: health_pb2.HealthCheckResponse.ServingStatus.ValueType | None = None
        while True:
            async with self._changed:
                await self._changed.wait_for(functools.partial(self._news_for, request.service, sent))
                status, last = self._current(request.service), self._shutting_down
            if status != sent:  # written outside the lock: a slow watcher holds up no one
                await context.write(health_pb2.HealthCheckResponse(status=status))
                sent = status
            if last:
                return

    async def set(self, service: str, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType) -> None:
        """Sets a service's status (ignored once shutdown has begun)."""
        async with self._changed:
            if not self._shutting_down:
                self._status[service] = status
                self._changed.notify_all()

    async def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING for good; open Watch streams send it and end."""
        async with self._changed:
            self._shutting_down = True
            self._status = dict.fromkeys(self._status, _NOT_SERVING)
            self._changed.notify_all()

    def _news_for(self, service: str, sent: health_pb2.HealthCheckResponse.ServingStatus.ValueType | None) -> bool:
        """Whether a watcher of `service` that last sent `sent` has something to do."""
        return self._shutting_down or self._current(service) != sent

    def _current(self, service: str) -> health_pb2.HealthCheckResponse.ServingStatus.ValueType:
        return self._status.get(service, _SERVICE_UNKNOWN)


def add_health_and_reflection(server: grpc.aio.Server, service_name: str, *, reflection: bool) -> HealthServicer:
    """The standard gRPC health service (NOT_SERVING until `set_serving`) and, when asked, server reflection; both
    registered like our own services (agentrun_core.grpc_decoding: a request that does not decode is
    INVALID_ARGUMENT)."""
    health_servicer = HealthServicer()
    add_servicer(health_pb2_grpc.add_HealthServicer_to_server, health_servicer, server)
    if reflection:
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        names = [service_name, health_name, grpc_reflection.SERVICE_NAME]
        reflection_servicer = grpc_reflection.aio.ReflectionServicer(names)
        add_servicer(reflection_pb2_grpc.add_ServerReflectionServicer_to_server, reflection_servicer, server)
        add_servicer(_add_reflection_v1, reflection_servicer, server)
    return health_servicer


REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _add_reflection_v1(servicer: Any, server: Any) -> None:
    """Reflection also under its stable name, grpc.reflection.v1 (grpcio-reflection serves v1alpha only; clients that
    speak only v1 found no reflection). v1's messages are v1alpha's, field for field, so the same servicer answers."""
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_registered_method_handlers(REFLECTION_V1, {"ServerReflectionInfo": handler})


async def set_serving(health_servicer: HealthServicer, service_name: str) -> None:
    """SERVING for the server as a whole ("") and for the named service."""
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
