"""The message cap for MCP servers over streamable HTTP (AGENTRUN_MCP_MAX_MESSAGE_BYTES, as for stdio servers).

A server answers a request with either an SSE stream or one JSON body. The SDK caps one SSE event itself
(`max_sse_event_size`, which we set to our cap: its own default, 1 MiB, refused tool results that stdio servers may
send); a JSON body it reads whole, with no bound. `CappedTransport` counts the bytes of every JSON body as they arrive
and stops at the cap, so one oversized answer fails its own call (with the size and the setting named) instead of
growing the process's memory without bound; the connection stays usable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx2


class MessageTooLarge(httpx2.StreamError):
    """An answer over the cap. A StreamError, so the SDK turns it into an error of the one request it answered."""


def too_large_message(server: str, limit: int) -> str:
    return (
        f"MCP server {server!r} sent a message of more than {limit} bytes, the cap "
        "(AGENTRUN_MCP_MAX_MESSAGE_BYTES); it was discarded"
    )


def is_oversized_event(message: str) -> bool:
    """Whether an error the SDK reports for a request is its SSE event cap (mcp.client.streamable_http: 'Server-sent
    event exceeded the N byte limit.'): the one answer was too large, the connection is fine."""
    return "exceeded the" in message and "byte limit" in message


class _CountedBody(httpx2.AsyncByteStream):
    def __init__(self, body: httpx2.AsyncByteStream, limit: int, server: str) -> None:
        self._body = body
        self._limit = limit
        self._server = server

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._body:
            received += len(chunk)
            if received > self._limit:
                raise MessageTooLarge(too_large_message(self._server, self._limit))
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


class CappedTransport(httpx2.AsyncBaseTransport):
    """httpx2's own transport, with JSON bodies over `limit` bytes refused while they arrive. It also keeps the last
    HTTP error status the server answered with (`last_error_status`, e.g. "HTTP 401 Unauthorized"): the SDK reports
    a non-JSON-RPC error answer only as "Server returned an error response"."""

    def __init__(self, limit: int, server: str) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._limit = limit
        self._server = server
        self.last_error_status = ""
        # When (event loop time) the server last answered 404: it no longer knows the session.
        self.last_not_found_at: float | None = None

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self._inner.handle_async_request(request)
        if response.status_code >= 400:
            self.last_error_status = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if response.status_code == 404:
            self.last_not_found_at = asyncio.get_running_loop().time()
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            return response  # the SDK caps each event (max_sse_event_size)
        assert isinstance(response.stream, httpx2.AsyncByteStream)
        response.stream = _CountedBody(response.stream, self._limit, self._server)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
