"""The one place where RunsService's domain errors become gRPC statuses."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import grpc

from agentrun_core.grpc_status import abort
from agentrun_core.proto_convert import ConversionError
from runs_service.errors import (
    InvalidArgument,
    PermissionDenied,
    QueryTimedOut,
    RunNotFound,
    RunsServiceError,
    SchemaOutdated,
    StorageUnavailable,
    SumOutOfRange,
)

log = logging.getLogger(__name__)

_CODES: list[tuple[type[RunsServiceError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (RunNotFound, grpc.StatusCode.NOT_FOUND),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (StorageUnavailable, grpc.StatusCode.UNAVAILABLE),
    (QueryTimedOut, grpc.StatusCode.DEADLINE_EXCEEDED),
    (SchemaOutdated, grpc.StatusCode.FAILED_PRECONDITION),
    (SumOutOfRange, grpc.StatusCode.OUT_OF_RANGE),
]


def status_code_for(error: RunsServiceError) -> grpc.StatusCode:
    for error_type, code in _CODES:
        if isinstance(error, error_type):
            return code
    return grpc.StatusCode.INTERNAL


R = TypeVar("R")
M = TypeVar("M")


def translate_errors(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[R]]:
    """Turns domain errors raised by a unary servicer method into rich gRPC statuses; logs unexpected ones."""

    @wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except Exception as exc:  # CancelledError (a client gone) is not an Exception
            await _abort_for(context, method.__name__, exc)

    return wrapper


async def _abort_for(context: grpc.aio.ServicerContext, rpc: str, exc: Exception) -> NoReturn:
    """Ends the call with the status of `exc`: the one mapping of RunsService's errors to gRPC statuses."""
    if isinstance(exc, ConversionError):
        await abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc), reason="INVALID_ARGUMENT", field=exc.field)
    elif isinstance(exc, RunsServiceError):
        code = status_code_for(exc)
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL):
            log.warning("request failed", extra={"rpc": rpc, "reason": exc.reason, "error": str(exc)})
        await abort(context, code, exc.message, reason=exc.reason, field=getattr(exc, "field", None))
    else:
        log.exception("unexpected error", extra={"rpc": rpc}, exc_info=exc)
        await abort(context, grpc.StatusCode.INTERNAL, "internal error; see the server log", reason="INTERNAL")


def translate_stream_errors(
    method: Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[M]],
) -> Callable[[Any, Any, grpc.aio.ServicerContext], AsyncIterator[M]]:
    """translate_errors for a server-streaming method (an async generator): an error before or between messages
    ends the stream with its rich status."""

    @wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[M]:
        try:
            async for message in method(self, request, context):
                yield message
        except Exception as exc:  # CancelledError (a client gone) is not an Exception
            await _abort_for(context, method.__name__, exc)

    return wrapper
