"""Requests that are not valid protobuf get INVALID_ARGUMENT, never UNKNOWN.

grpc.aio decodes a request before any interceptor or handler of ours runs, and a request deserializer that raises
(protobuf's DecodeError on truncated bytes or a string field that is not UTF-8) makes grpc answer
UNKNOWN "Unexpected <class 'google.protobuf.message.DecodeError'>" and log an ERROR with a traceback per call.

So every service is registered through `add_servicer`: it takes the method table the generated
`add_XServicer_to_server` builds, swaps each request deserializer for one that never raises (bytes that do not
decode become an `Undecodable` marker) and wraps each behaviour so that a marker is answered INVALID_ARGUMENT (reason
MALFORMED_REQUEST, naming the message type expected), logged once at WARNING without a traceback. A new RPC is
covered as soon as it is generated: nothing here names a method.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from agentrun_core.grpc_status import abort

log = logging.getLogger(__name__)

MALFORMED_REQUEST = "MALFORMED_REQUEST"

Behavior = Callable[..., Any]
Deserializer = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What a guarded deserializer returns for bytes that are not a valid `message_type`."""

    message_type: str
    size: int
    problem: str


def undecodable_message(message_type: str) -> str:
    """The status message a caller gets for a request that did not decode."""
    return (
        f"the request could not be decoded as {message_type}: it is not valid protobuf for that message "
        "(truncated or corrupt bytes, or a string field that is not valid UTF-8)"
    )


def add_servicer(add_to_server: Callable[[Any, Any], None], servicer: Any, server: grpc.aio.Server) -> None:
    """Registers `servicer` as the generated `add_to_server(servicer, server)` would, with guarded deserializers.

    `add_to_server` is a generated `add_XServicer_to_server` (ours, health's, reflection's): it is called against a
    recorder that keeps the method table it registers, and the guarded table is what `server` gets.
    """
    recorder = _TableRecorder()
    add_to_server(servicer, recorder)
    if not recorder.tables:
        raise ValueError(f"{getattr(add_to_server, '__name__', add_to_server)} registered no method table")
    for service, handlers in recorder.tables.items():
        guarded = {name: guard_handler(f"/{service}/{name}", handler) for name, handler in handlers.items()}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, guarded),))
        server.add_registered_method_handlers(service, guarded)


class _TableRecorder:
    """Stands in for a grpc.aio.Server while a generated add_*_to_server runs: keeps its method tables."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, grpc.RpcMethodHandler]] = {}

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self.tables[service] = dict(handlers)

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        """Ignored: the same table comes through add_registered_method_handlers."""


def guard_handler(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a deserializer that never raises and a behaviour that answers `Undecodable` itself."""
    deserializer = _guarded_deserializer(handler.request_deserializer, _message_type(handler, method))
    serializer = handler.response_serializer
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _unary_request(handler.unary_unary, method),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _unary_request(handler.unary_stream, method),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _stream_request(handler.stream_unary, method),
            request_deserializer=deserializer,
            response_serializer=serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _stream_request(handler.stream_stream, method),
        request_deserializer=deserializer,
        response_serializer=serializer,
    )


def _message_type(handler: grpc.RpcMethodHandler, method: str) -> str:
    """The full protobuf name of the request message (the generated deserializer is `SomeRequest.FromString`)."""
    owner = getattr(handler.request_deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None)
    return name if isinstance(name, str) else f"the request message of {method}"


def _guarded_deserializer(deserializer: Deserializer | None, message_type: str) -> Deserializer | None:
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except (DecodeError, UnicodeDecodeError, ValueError, TypeError, RecursionError) as exc:
            # Never raise here: grpc turns it into UNKNOWN. The behaviour wrapper answers the marker.
            return Undecodable(message_type, len(raw), type(exc).__name__)

    return deserialize


async def _reject(method: str, request: Undecodable, context: grpc.aio.ServicerContext) -> NoReturn:
    log.warning(
        "request could not be decoded",
        extra={
            "method": method,
            "expected": request.message_type,
            "bytes": request.size,
            "problem": request.problem,
            "peer": context.peer(),
        },
    )
    await abort(
        context,
        grpc.StatusCode.INVALID_ARGUMENT,
        undecodable_message(request.message_type),
        reason=MALFORMED_REQUEST,
        metadata={"message_type": request.message_type},
    )


def _unary_request(behavior: Behavior, method: str) -> Behavior:
    """Wraps a behaviour that takes one request; grpc.aio tells streaming generators from coroutines (which may
    write), so the wrapper keeps the kind."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            if isinstance(request, Undecodable):
                await _reject(method, request, context)
            async for item in behavior(request, context):
                yield item

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await _reject(method, request, context)
        result = behavior(request, context)
        return await result if inspect.isawaitable(result) else result

    return call


def _stream_request(behavior: Behavior, method: str) -> Behavior:
    """Wraps a behaviour that reads a request stream: the first undecodable message ends the call."""

    def checked(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async def iterate() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Undecodable):
                    await _reject(method, request, context)
                yield request

        return iterate()

    if inspect.isasyncgenfunction(behavior):

        async def stream(requests: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for item in behavior(checked(requests, context), context):
                yield item

        return stream

    async def call(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        result = behavior(checked(requests, context), context)
        return await result if inspect.isawaitable(result) else result

    return call
