"""Process lifecycle shared by both services."""

from __future__ import annotations

import asyncio
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection as grpc_reflection


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


def add_health_and_reflection(
    server: grpc.aio.Server, service_name: str, *, reflection: bool
) -> health.aio.HealthServicer:
    """The standard gRPC health service (NOT_SERVING until `set_serving`) and, when asked, server reflection."""
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if reflection:
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        grpc_reflection.enable_server_reflection([service_name, health_name, grpc_reflection.SERVICE_NAME], server)
    return health_servicer


async def set_serving(health_servicer: health.aio.HealthServicer, service_name: str) -> None:
    """SERVING for the server as a whole ("") and for the named service."""
    for name in ("", service_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
