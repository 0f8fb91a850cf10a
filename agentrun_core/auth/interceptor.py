"""The authentication interceptor: a bearer token in, `current_identity` set for the call, or UNAUTHENTICATED.

The identity is set inside the handler's own execution (the behaviour is wrapped), so it holds for unary and
streaming handlers alike, whatever task grpc runs them in. Health is always open; reflection is open only when
configured (AGENTRUN_REFLECTION_PUBLIC). Per-method permissions (who may RecordRun, who sees which run) stay with
the servicers, which read `current_identity`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import grpc

from agentrun_core.auth.settings import AuthMode, AuthSettings
from agentrun_core.auth.tokens import MAX_TOKEN_CHARS, TokenConfigError, TokenStore
from agentrun_core.echo import cut
from agentrun_core.grpc_status import abort
from agentrun_core.identity import Identity, current_identity

log = logging.getLogger(__name__)

HEALTH_PREFIX = "/grpc.health.v1.Health/"
# Initial metadata of every authenticated unary call's answer: the caller's user name (percent-encoded).
USER_METADATA_KEY = "agentrun-user"
REFLECTION_PREFIXES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")

MISSING = "missing credentials: send the metadata `authorization: Bearer <token>`"
MALFORMED = "malformed authorization metadata: expected `authorization: Bearer <token>`"
INVALID = "invalid bearer token (unknown or revoked)"

Behavior = Callable[..., Any]

# Request headers up to 32 KiB reach the interceptor (gRPC's default soft limit of 8 KiB refuses some calls at
# random with RESOURCE_EXHAUSTED): an oversized token is then a clean UNAUTHENTICATED; beyond this, RESOURCE_EXHAUSTED.
SERVER_METADATA_OPTIONS: list[tuple[str, int]] = [
    ("grpc.max_metadata_size", 32 * 1024),
    ("grpc.absolute_max_metadata_size", 32 * 1024),
]


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, store: TokenStore, *, public_prefixes: Sequence[str] = (HEALTH_PREFIX,)) -> None:
        self._store = store
        self._public = tuple(public_prefixes)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        method = handler_call_details.method or ""
        handler = await continuation(handler_call_details)
        if method.startswith(self._public):
            return handler
        identity, problem = self._authenticate(handler_call_details.invocation_metadata or ())
        if identity is None:
            return _rejecting(handler, method, problem)
        if handler is None:
            return None
        return _bound(handler, identity)

    def _authenticate(self, metadata: Sequence[tuple[str, str | bytes]]) -> tuple[Identity | None, str]:
        values = [v for k, v in metadata if k.lower() == "authorization"]
        if not values:
            return None, MISSING
        if len(values) > 1:
            return None, MALFORMED
        value = values[0]
        if isinstance(value, bytes) or len(value) > MAX_TOKEN_CHARS + 16:
            return None, MALFORMED
        scheme, _, token = value.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or any(c.isspace() for c in token):
            return None, MALFORMED
        identity = self._store.identify(token)
        if identity is None:
            return None, INVALID
        return identity, ""


def _bound(handler: grpc.RpcMethodHandler, identity: Identity) -> grpc.RpcMethodHandler:
    """The same handler with every behaviour running under `identity`."""
    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            _with_identity(handler.unary_unary, identity),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            _with_identity(handler.unary_stream, identity),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            _with_identity(handler.stream_unary, identity),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        _with_identity(handler.stream_stream, identity),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _with_identity(behavior: Behavior, identity: Identity) -> Behavior:
    # grpc.aio treats async generator functions as streaming generators and coroutines as handlers that
    # return (or write): keep the kind.
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            current_identity.set(identity)
            async for item in behavior(request, context):
                yield item

        return stream

    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        current_identity.set(identity)
        # Who the services took the caller for (the web console shows it): percent-encoded, metadata is ASCII.
        await context.send_initial_metadata(((USER_METADATA_KEY, quote(identity.user, safe="")),))
        result = behavior(request, context)
        if inspect.isawaitable(result):
            return await result
        return result

    return call


# A rejected call that streams its requests: how long, and how many requests, the rejection waits for the client to
# finish sending (see _rejecting).
REJECT_DRAIN_S = 2.0
REJECT_DRAIN_MESSAGES = 16


def _rejecting(handler: grpc.RpcMethodHandler | None, method: str, problem: str) -> grpc.RpcMethodHandler:
    """A handler answering UNAUTHENTICATED. For a call that streams its requests, the answer waits until the client
    has finished sending (its half-close; at most REJECT_DRAIN_MESSAGES requests, read as bytes and never parsed,
    and REJECT_DRAIN_S): a status sent while the client is still writing makes its write fail, and grpc's client
    then reports that failure (INTERNAL "Internal error from Core", or CANCELLED) instead of UNAUTHENTICATED, about 1
    call in 200 (reflection without a token, as grpcurl or buf curl send it)."""

    async def reject(request: Any, context: grpc.aio.ServicerContext) -> None:
        log.info(
            "call refused: not authenticated",
            extra={"method": cut(method, 200), "peer": context.peer(), "problem": problem},
        )
        await abort(context, grpc.StatusCode.UNAUTHENTICATED, problem, reason="UNAUTHENTICATED")

    async def reject_stream(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        await _until_sent(requests)
        await reject(None, context)

    deserializer = handler.request_deserializer if handler is not None else None
    serializer = handler.response_serializer if handler is not None else None
    if handler is None or handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            reject, request_deserializer=deserializer, response_serializer=serializer
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            reject, request_deserializer=deserializer, response_serializer=serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(reject_stream, response_serializer=serializer)
    return grpc.stream_stream_rpc_method_handler(reject_stream, response_serializer=serializer)


async def _until_sent(requests: AsyncIterator[bytes]) -> None:
    """Reads (and drops) a client's requests until it has sent them all, within the bounds above."""
    try:
        async with asyncio.timeout(REJECT_DRAIN_S):
            received = 0
            async for _ in requests:
                received += 1
                if received >= REJECT_DRAIN_MESSAGES:
                    return
    except TimeoutError:
        return


def auth_interceptors(settings: AuthSettings, *, service: str) -> list[grpc.aio.ServerInterceptor]:
    """The interceptors a server installs for `settings`; TokenConfigError when tokens are on but none exist."""
    if settings.mode is AuthMode.OFF:
        log.warning(
            "authentication is OFF (AGENTRUN_AUTH=off): every caller is the local admin and sees every run; "
            "use this only for local development (docs/security.md)",
            extra={"service": service},
        )
        return []
    store = TokenStore.load(file=settings.tokens_file, inline=settings.tokens_inline)
    if len(store) == 0:
        raise TokenConfigError(
            f"{service}: authentication is on (AGENTRUN_AUTH=tokens) but no tokens are configured: set "
            "AGENTRUN_TOKENS_FILE (or AGENTRUN_TOKENS) to a tokens file, or AGENTRUN_AUTH=off for local "
            "development (docs/security.md)"
        )
    public = [HEALTH_PREFIX, *(REFLECTION_PREFIXES if settings.reflection_public else ())]
    log.info(
        "authentication on: bearer tokens",
        extra={
            "service": service,
            "tokens": len(store),
            "users": len(store.users),
            "reflection_public": settings.reflection_public,
        },
    )
    return [BearerAuthInterceptor(store, public_prefixes=public)]
