"""Linear-time line reading for the MCP SDK's stdio client (mcp 2.3.0), installed when the tools package loads.

The SDK's stdio reader splits stdout into JSON-RPC lines with `lines = (buffer + chunk).split("\\n")` over 64 KB
chunks: a line of n bytes costs O(n^2 / 64 KB). A 20 MB tool result (40 MB on the wire: MCP servers send a result's
text and its structured copy) took 11-43 s of event-loop CPU here, in 5-60 ms slices that delayed every other run's
steps, and left the reader holding the last line. `LineTextReceiveStream` hands the reader whole lines instead: it
decodes chunks incrementally, keeps the pieces of an unfinished line in a list, and joins them once when the line
ends, so the SDK's `buffer + chunk` never copies more than one line. The same 20 MB result reads in under 1 s.

The SDK creates its text stream through the module-level name `mcp.client.stdio.TextReceiveStream`; `install()`
points that name at this class. The SDK version is pinned exactly (constraints.txt) and
tests/execution_service/tools/test_stdio_lines.py fails if a new version stops reading through that name.
"""

from __future__ import annotations

import codecs
import logging

import anyio
import mcp.client.stdio as sdk_stdio
from anyio.abc import ByteReceiveStream

log = logging.getLogger(__name__)


class LineTextReceiveStream:
    """Async iterator of text made of whole lines (each item ends with a newline), read from a byte stream."""

    def __init__(self, transport_stream: ByteReceiveStream, encoding: str = "utf-8", errors: str = "strict") -> None:
        self.transport_stream = transport_stream
        self._decoder = codecs.getincrementaldecoder(encoding)(errors=errors)
        self._pending: list[str] = []  # the pieces of the line being read

    def __aiter__(self) -> LineTextReceiveStream:
        return self

    async def __anext__(self) -> str:
        while True:
            try:
                chunk = await self.transport_stream.receive()
            except anyio.EndOfStream:  # as anyio's TextReceiveStream; other errors reach the SDK's reader as they are
                raise StopAsyncIteration from None
            text = self._decoder.decode(chunk)
            end = text.rfind("\n")
            if end < 0:
                self._pending.append(text)
                continue
            self._pending.append(text[: end + 1])
            lines = "".join(self._pending)
            self._pending = [text[end + 1 :]] if end + 1 < len(text) else []
            return lines

    async def aclose(self) -> None:
        await self.transport_stream.aclose()


def install() -> None:
    """Makes the SDK's stdio client read through LineTextReceiveStream (idempotent)."""
    if getattr(sdk_stdio, "TextReceiveStream", None) is LineTextReceiveStream:
        return
    if not hasattr(sdk_stdio, "TextReceiveStream"):
        log.warning("mcp.client.stdio has no TextReceiveStream: large stdio results are read by the SDK as it is")
        return
    sdk_stdio.TextReceiveStream = LineTextReceiveStream  # type: ignore[misc,assignment]
