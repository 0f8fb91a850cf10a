"""Forwards a child process's stderr to our log, one record per line, tagged with the MCP server name.

Lines go through the default redaction rules (a server printing its own API key does not put it in our log), and at
most LINES_PER_WINDOW lines per WINDOW_S seconds are logged per server: past that, one line per window says how many
were not (a server writing 20,000 lines of stderr in a second made 20,000 records).

stdio_client takes a file for the server's stderr. We hand it the write end of a pipe and read the other end on
the event loop, so a chatty server can never block on a full stderr pipe and its output lands in our log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from types import TracebackType
from typing import Self, TextIO, cast

from agentrun_core.tasks import cancel_and_wait
from execution_service.redaction.redactor import Redactor

logger = logging.getLogger(__name__)

_MAX_LINE_CHARS = 8_192
_READ_CHUNK = 65_536
_DRAIN_TIMEOUT_S = 1.0
LINES_PER_WINDOW = 200
WINDOW_S = 10.0
LOG_REDACTOR = Redactor()


class StderrForwarder:
    """Async context manager: `errlog` is the file to give the subprocess; lines are logged until EOF. `tail`, when
    given, keeps the last lines too (its maxlen), so a server that dies can be reported with its last words."""

    def __init__(self, server_name: str, level: int = logging.INFO, *, tail: deque[str] | None = None) -> None:
        self._server_name = server_name
        self._level = level
        self._tail = tail
        self._write_end: TextIO | None = None
        self._transport: asyncio.ReadTransport | None = None
        self._task: asyncio.Task[None] | None = None
        self._window_start = 0.0
        self._logged_in_window = 0
        self._dropped_in_window = 0

    @property
    def errlog(self) -> TextIO:
        if self._write_end is None:
            raise RuntimeError("StderrForwarder is not entered")
        return self._write_end

    async def __aenter__(self) -> Self:
        read_fd, write_fd = os.pipe()
        self._write_end = cast(TextIO, os.fdopen(write_fd, "w", encoding="utf-8"))
        read_file = os.fdopen(read_fd, "rb", buffering=0)
        reader = asyncio.StreamReader()
        try:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), read_file)
        except BaseException:
            read_file.close()
            self._write_end.close()
            raise
        self._transport = transport
        self._task = asyncio.create_task(self._pump(reader), name=f"mcp-stderr:{self._server_name}")
        return self

    def child_started(self) -> None:
        """Closes our copy of the write end once the child has its own, so EOF arrives when the child exits."""
        if self._write_end is not None and not self._write_end.closed:
            self._write_end.close()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.child_started()
        if self._task is not None:
            # The child is gone by now; give the reader a moment to log its last words, then stop it (a grandchild
            # holding the pipe open must not keep us waiting).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._task), _DRAIN_TIMEOUT_S)
            await cancel_and_wait(self._task)
        if self._transport is not None:
            self._transport.close()

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        pending = ""
        try:
            while chunk := await reader.read(_READ_CHUNK):
                lines = (pending + chunk.decode("utf-8", errors="replace")).split("\n")
                pending = lines.pop()
                for line in lines:
                    self._emit(line)
                if len(pending) > _MAX_LINE_CHARS:
                    self._emit(pending)
                    pending = ""
        except OSError:
            logger.warning("reading stderr of MCP server %r failed", self._server_name, exc_info=True)
        finally:
            if pending:
                self._emit(pending)
            self._report_dropped()

    def _emit(self, line: str) -> None:
        line = line.rstrip("\r")
        if not line.strip():
            return
        if len(line) > _MAX_LINE_CHARS:
            line = line[:_MAX_LINE_CHARS] + " [...]"
        line = LOG_REDACTOR.scrub_text(line)
        if self._tail is not None:
            self._tail.append(line)
        if self._over_rate():
            return
        logger.log(self._level, "[mcp %s stderr] %s", self._server_name, line, extra={"mcp_server": self._server_name})

    def _over_rate(self) -> bool:
        """Whether this line is past the window's allowance (counted, not logged); a new window first says how many
        lines the previous one did not log."""
        now = asyncio.get_running_loop().time()
        if now - self._window_start >= WINDOW_S:
            self._report_dropped()
            self._window_start, self._logged_in_window = now, 0
        if self._logged_in_window >= LINES_PER_WINDOW:
            self._dropped_in_window += 1
            return True
        self._logged_in_window += 1
        return False

    def _report_dropped(self) -> None:
        if self._dropped_in_window:
            logger.warning(
                "[mcp %s stderr] %d lines not logged (more than %d in %g s)",
                self._server_name,
                self._dropped_in_window,
                LINES_PER_WINDOW,
                WINDOW_S,
                extra={"mcp_server": self._server_name},
            )
            self._dropped_in_window = 0
