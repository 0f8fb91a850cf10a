"""Linear-time, size-capped line reading for the MCP SDK's stdio client (mcp 2.3.0), installed when the tools package
loads.

The SDK's stdio reader splits stdout into JSON-RPC lines with `lines = (buffer + chunk).split("\\n")` over 64 KB
chunks: a line of n bytes costs O(n^2 / 64 KB). A 20 MB tool result (40 MB on the wire: MCP servers send a result's
text and its structured copy) took 11-43 s of event-loop CPU here, in 5-60 ms slices that delayed every other run's
steps, and left the reader holding the last line. `LineTextReceiveStream` hands the reader whole lines instead: it
splits the bytes at newlines (a newline byte is never part of a multi-byte UTF-8 character), keeps the pieces of an
unfinished line in a list, and joins and decodes them once when the line ends, so the SDK's `buffer + chunk` never
copies more than one line.

One line is capped (`LinePolicy.max_bytes`, AGENTRUN_MCP_MAX_MESSAGE_BYTES): a server writing a 100 MB line grew the
service's memory by 1.4 GB (the line, its text, the parsed message and the result's copies). Past the cap the rest of
the line is read and dropped, keeping only its first and last few KB, and then:
- when those show a response to one of our requests (`"id"` and `"result"`/`"error"` at the top level), the line is
  replaced by a JSON-RPC error answer to that request: the call fails with a message naming the size and the limit,
  and the connection stays usable;
- otherwise (a notification, a request of the server's, or an id out of sight), stdout is closed and the stream
  ends: the policy's `on_fault` hears why first, and the connection is restarted with that reason.

The SDK creates its text stream through the module-level name `mcp.client.stdio.TextReceiveStream`; `install()`
points that name at this class. The SDK version is pinned exactly (constraints.txt) and
tests/execution_service/tools/test_stdio_lines.py fails if a new version stops reading through that name. The SDK
builds the stream in its reader task, which inherits the context of the task that entered `stdio_client`: the
connection sets `LINE_POLICY` there, so each server has its own.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import mcp.client.stdio as sdk_stdio
from anyio.abc import ByteReceiveStream

log = logging.getLogger(__name__)

DEFAULT_MAX_LINE_BYTES = 64 * 1024 * 1024
_KEPT_BYTES = 4096  # of an oversized line's start and end, to find its id
_INTERNAL_ERROR = -32603
_ID = rb'"id"\s*:\s*(-?\d+|"(?:[^"\\]|\\.){0,200}")'
_JSONRPC = rb'"jsonrpc"\s*:\s*"2\.0"'
_OUTCOME = rb'"(?:result|error)"\s*:'
# The top-level members a response starts or ends with, in the orders SDKs write them: {"jsonrpc","id","result"...
# (Python), {"result"...,"jsonrpc","id"} (TypeScript), {"id","jsonrpc","result"...}.
_HEAD_ID = re.compile(
    rb"\A\s*\{\s*(?:" + _JSONRPC + rb"\s*,\s*)?" + _ID + rb"\s*,\s*(?:" + _JSONRPC + rb"\s*,\s*)?" + _OUTCOME
)
_HEAD_OUTCOME = re.compile(rb"\A\s*\{\s*" + _OUTCOME)
_TAIL_ID = re.compile(rb"[,{]\s*" + _ID + rb"\s*(?:,\s*" + _JSONRPC + rb"\s*)?\}\s*\Z")


@dataclass(frozen=True, slots=True)
class LinePolicy:
    """The largest line (JSON-RPC message) read from one server, and who hears why its stdout was given up."""

    max_bytes: int = DEFAULT_MAX_LINE_BYTES
    server: str = ""
    on_fault: Callable[[str], None] | None = None


LINE_POLICY: contextvars.ContextVar[LinePolicy | None] = contextvars.ContextVar("mcp_stdio_line_policy", default=None)


@dataclass(slots=True)
class _Oversized:
    """What is kept of a line past the cap: its start, its end, and its size."""

    head: bytes
    tail: bytes
    size: int

    def add(self, piece: bytes) -> None:
        self.size += len(piece)
        self.tail = (self.tail + piece)[-_KEPT_BYTES:] if len(piece) < _KEPT_BYTES else piece[-_KEPT_BYTES:]


class LineTooLongError(Exception):
    """A server wrote a line longer than the policy allows, and it was not an answer that could be failed alone."""


class LineTextReceiveStream:
    """Async iterator of text made of whole lines (each item ends with a newline), read from a byte stream, each
    line at most `LINE_POLICY.max_bytes` (see the module docstring for what happens past it)."""

    def __init__(self, transport_stream: ByteReceiveStream, encoding: str = "utf-8", errors: str = "strict") -> None:
        self.transport_stream = transport_stream
        self._encoding = encoding
        self._errors = errors
        self._policy = LINE_POLICY.get() or LinePolicy()
        self._pending: list[bytes] = []  # the pieces of the line being read
        self._pending_bytes = 0
        self._oversized: _Oversized | None = None
        self._given_up = False

    def __aiter__(self) -> LineTextReceiveStream:
        return self

    async def __anext__(self) -> str:
        while not self._given_up:
            try:
                chunk = await self.transport_stream.receive()
            except anyio.EndOfStream:  # as anyio's TextReceiveStream; other errors reach the SDK's reader as they are
                raise StopAsyncIteration from None
            lines: list[bytes] = []
            start = 0
            while (end := chunk.find(b"\n", start)) >= 0:
                self._add(chunk[start : end + 1] if start or end + 1 < len(chunk) else chunk)
                line = self._finish_line()
                if line is None:
                    await self._give_up()
                    if lines:  # the lines before it still count; the stream ends at the next read
                        return b"".join(lines).decode(self._encoding, self._errors)
                    raise StopAsyncIteration
                lines.append(line)
                start = end + 1
            if start < len(chunk):
                self._add(chunk[start:] if start else chunk)
            if lines:
                return b"".join(lines).decode(self._encoding, self._errors)
        raise StopAsyncIteration

    async def aclose(self) -> None:
        await self.transport_stream.aclose()

    def _add(self, piece: bytes) -> None:
        if self._oversized is not None:
            self._oversized.add(piece)
        elif self._pending_bytes + len(piece) <= self._policy.max_bytes:
            self._pending.append(piece)
            self._pending_bytes += len(piece)
        else:
            pieces, self._pending = [*self._pending, piece], []
            self._oversized = _Oversized(head=_first_bytes(pieces), tail=b"", size=0)
            for kept in pieces:
                self._oversized.add(kept)
            self._pending_bytes = 0

    def _finish_line(self) -> bytes | None:
        """The line just ended (its pieces joined), an error answer in place of an oversized response, or None when
        an oversized line cannot be answered alone."""
        oversized, self._oversized = self._oversized, None
        if oversized is None:
            line = b"".join(self._pending)
            self._pending = []
            self._pending_bytes = 0
            return line
        request_id = _response_id(oversized)
        message = (
            f"the MCP server's message was {oversized.size:,} bytes, over the limit of {self._policy.max_bytes:,} "
            "bytes on one message (AGENTRUN_MCP_MAX_MESSAGE_BYTES); it was discarded"
        )
        log.warning(
            "MCP server %r wrote a message of %d bytes, over the %d-byte limit: %s",
            self._policy.server,
            oversized.size,
            self._policy.max_bytes,
            "the call it answers fails" if request_id is not None else "its connection is restarted",
            extra={"mcp_server": self._policy.server},
        )
        if request_id is None:
            if self._policy.on_fault is not None:
                self._policy.on_fault(message)
            return None
        answer = {"jsonrpc": "2.0", "id": request_id, "error": {"code": _INTERNAL_ERROR, "message": message}}
        return json.dumps(answer).encode() + b"\n"

    async def _give_up(self) -> None:
        """Stops reading this server: closing stdout also ends the SDK's drain of it."""
        self._given_up = True
        await self.transport_stream.aclose()


def _first_bytes(pieces: list[bytes]) -> bytes:
    """The first _KEPT_BYTES of the pieces, without joining them all."""
    head: list[bytes] = []
    size = 0
    for piece in pieces:
        head.append(piece[: _KEPT_BYTES - size])
        size += len(head[-1])
        if size >= _KEPT_BYTES:
            break
    return b"".join(head)


def _response_id(line: _Oversized) -> int | str | None:
    """The id of the response an oversized line is, when its first or last bytes show one, else None."""
    found = _HEAD_ID.match(line.head)
    if found is None and _HEAD_OUTCOME.match(line.head):
        found = _TAIL_ID.search(line.tail)
    if found is None:
        return None
    value = json.loads(found.group(1))
    return value if isinstance(value, (int, str)) else None


def install() -> None:
    """Makes the SDK's stdio client read through LineTextReceiveStream (idempotent)."""
    if getattr(sdk_stdio, "TextReceiveStream", None) is LineTextReceiveStream:
        return
    if not hasattr(sdk_stdio, "TextReceiveStream"):
        log.warning("mcp.client.stdio has no TextReceiveStream: large stdio results are read by the SDK as it is")
        return
    sdk_stdio.TextReceiveStream = LineTextReceiveStream  # type: ignore[misc,assignment]
