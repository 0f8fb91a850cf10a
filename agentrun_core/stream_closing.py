"""Response streams that end in their own task: the outermost server interceptor of both services.

grpc.aio drives a response-streaming handler written as an async generator with `async for`, sending each message
between two steps of the generator. When the RPC ends while the generator is suspended at a `yield` (the client went
away, or the call was cancelled during that send), grpc leaves the generator suspended; it is closed later by the
garbage collector's async-generator finalizer, in a new task with a fresh context. Every `with` block still open in
it then exits there: OpenTelemetry's server interceptor detaches the span context it attached in the RPC's context,
and logs "Failed to detach context ... was created in a different Context" with a traceback (about one stream in
three ended so); and the servicer's own clean-up (a client that went away cancels its run unless it detached) never
learns it was cancelled.

`StreamsEndInTheirTask` runs such a handler as a coroutine that writes each message with `context.write`, and closes
the generator itself, in the RPC's task, whatever ends the RPC: a cancellation during a write is thrown into the
generator at its `yield` (so its handlers see the cancellation, as when it comes while the generator waits), and it
is then closed. Handlers that already are coroutines are left as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import grpc


class StreamsEndInTheirTask(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        behavior = handler.unary_stream or handler.stream_stream
        if behavior is None or not inspect.isasyncgenfunction(behavior):
            return handler

        async def write_all(request: Any, context: grpc.aio.ServicerContext) -> None:
            responses: AsyncGenerator[Any] = behavior(request, context)
            try:
                async for response in responses:
                    try:
                        await context.write(response)
                    except asyncio.CancelledError as cancelled:
                        await _throw_into(responses, cancelled)
                        raise
            finally:
                await responses.aclose()

        make = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return make(
            write_all,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def _throw_into(responses: AsyncGenerator[Any], cancelled: asyncio.CancelledError) -> None:
    """Raises the cancellation inside the generator, at the `yield` it is suspended at; whatever it raises back (the
    cancellation itself, as a rule) is dropped: the caller re-raises the original."""
    with contextlib.suppress(BaseException):
        await responses.athrow(cancelled)
