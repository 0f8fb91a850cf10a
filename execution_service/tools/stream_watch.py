"""A read-stream wrapper that reports when the transport's stream ends (server exited, HTTP stream broken).

The MCP session does not tell its owner when the server goes away between calls; the owner learns it from this
wrapper and restarts the connection before the next call instead of failing it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import anyio


class ForwardingReceiveStream:
    """A receive stream that forwards everything to `inner`; subclasses look at what passes (`receive`)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        # e.g. `last_context` of the SDK's context-carrying streams.
        return getattr(self._inner, name)

    async def receive(self) -> Any:
        return await self._inner.receive()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._inner.close()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class EndWatchingReceiveStream(ForwardingReceiveStream):
    """Forwards everything to `inner`; calls `on_end` (once) when a receive finds the stream ended or closed."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        super().__init__(inner)
        self._on_end = on_end
        self._ended = False

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._ended_now()
            raise

    def _ended_now(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_end()
