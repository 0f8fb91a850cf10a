"""Every RPC both services serve, read from the service descriptors (a new RPC is covered without a test change),
and a raw call that sends bytes as they are and reports the status, its message and the size of the trailers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from agentrun.execution.v1 import execution_service_pb2
from agentrun.runs.v1 import runs_service_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

# Bounds on what any error may carry: the message a person reads, and every trailer together (grpc-message,
# grpc-status-details-bin, ...). A client's default metadata limit is 8 KiB; beyond it, it sees RESOURCE_EXHAUSTED.
MAX_MESSAGE_BYTES = 2 * 1024
MAX_TRAILER_BYTES = 8 * 1024
FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    input: Descriptor
    client_streaming: bool
    server_streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.name}"


def rpcs_of(*files: FileDescriptor) -> list[Rpc]:
    return [
        Rpc(service.full_name, method.name, method.input_type, method.client_streaming, method.server_streaming)
        for file in files
        for service in file.services_by_name.values()
        for method in service.methods
    ]


RUNS_RPCS = rpcs_of(runs_service_pb2.DESCRIPTOR)
EXECUTION_RPCS = rpcs_of(execution_service_pb2.DESCRIPTOR)
# Served by both services (reflection only when enabled, as in the test stacks).
STANDARD_RPCS = rpcs_of(health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)


@dataclass(frozen=True)
class Answer:
    code: grpc.StatusCode
    details: str
    trailer_bytes: int

    def check_bounded(self, what: str) -> None:
        """Not UNKNOWN/INTERNAL, a short message, small trailers."""
        assert self.code not in FORBIDDEN, (what, self.code, self.details[:300])
        assert len(self.details.encode()) <= MAX_MESSAGE_BYTES, (what, self.code, len(self.details), self.details[:300])
        assert self.trailer_bytes <= MAX_TRAILER_BYTES, (what, self.code, self.trailer_bytes)
        assert "metadata size exceeds" not in self.details, (what, self.details[:300])


def _identity(raw: bytes) -> bytes:
    return raw


async def raw_call(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    payload: bytes,
    *,
    metadata: Sequence[tuple[str, str]] = (),
    timeout_s: float = 10.0,
    raise_errors: bool = False,
    whole_stream: bool = False,
) -> Answer:
    """Sends `payload` as the request (as the only message of a request stream). A streaming answer is read up to
    its first message, then cancelled: what matters here is how a call fails, not what a stream that works sends.
    `raise_errors`: raise the AioRpcError instead of answering it. `whole_stream`: read a streaming answer to its end
    (a run's stream must not end in UNKNOWN either)."""
    kwargs = {"request_serializer": _identity, "response_deserializer": _identity}
    call: grpc.aio.Call
    if rpc.client_streaming and rpc.server_streaming:
        call = channel.stream_stream(rpc.path, **kwargs)(iter([payload]), metadata=metadata, timeout=timeout_s)
    elif rpc.client_streaming:
        call = channel.stream_unary(rpc.path, **kwargs)(iter([payload]), metadata=metadata, timeout=timeout_s)
    elif rpc.server_streaming:
        call = channel.unary_stream(rpc.path, **kwargs)(payload, metadata=metadata, timeout=timeout_s)
    else:
        call = channel.unary_unary(rpc.path, **kwargs)(payload, metadata=metadata, timeout=timeout_s)
    try:
        if rpc.server_streaming:
            async for _ in call:
                if not whole_stream:
                    call.cancel()
                    return Answer(grpc.StatusCode.OK, "", 0)
        else:
            await call
    except asyncio.CancelledError:
        return Answer(grpc.StatusCode.OK, "", 0)
    except grpc.aio.AioRpcError as exc:
        if raise_errors:
            raise
        trailers = exc.trailing_metadata() or ()
        size = sum(len(key) + len(value) for key, value in trailers) + len((exc.details() or "").encode())
        return Answer(exc.code(), exc.details() or "", size)
    return Answer(grpc.StatusCode.OK, "", 0)
