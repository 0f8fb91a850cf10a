"""One pooled connection to one MCP server, shared by every run.

anyio ties a stdio client and its session to the task that entered them, so one long-lived *owner* task per
connection enters the transport and the `ClientSession`, initializes, lists the tools, then parks until told to
stop, and exits everything itself. Calls from any other task go through the session object (request/response
correlation is task-agnostic).

Lifecycle: IDLE --first use--> STARTING --ok--> READY --connection lost--> DOWN --backoff elapsed, next use-->
STARTING ... ; any state --aclose()--> CLOSED.

Failures never hang a caller: every wait is bounded. A lost connection (the server process exited, the stream
broke, or it stopped answering pings after a call timed out) is torn down and restarted lazily by the next call once
an exponential backoff has elapsed. A call arriving during the backoff waits for the restart when it is due within
half of the call's timeout (leaving the other half for the start and the call), else fails fast with
ServerUnavailableError and the reason. The tool list of the last session that started is kept: while the server is
down, `list_tools` answers from it, so agents resolve their tools (and their runs start) and each call of a tool of
that server is a tool error for the model, never a failed run.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import anyio
import httpx2
import pydantic
from mcp import ClientSession, MCPError, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import (
    CallToolResult,
    Implementation,
    LoggingMessageNotificationParams,
    PaginatedRequestParams,
    Tool,
    ToolListChangedNotification,
)
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, REQUEST_TIMEOUT, RequestParamsMeta

from agentrun_core.backoff import Backoff
from agentrun_core.memory import release_free_memory
from agentrun_core.telemetry import current_trace_carrier
from execution_service.tools.http_cap import CappedTransport, is_oversized_event, too_large_message
from execution_service.tools.mcp_config import HttpServer, McpServerConfig, StdioServer, resolve_command
from execution_service.tools.request_meta import tool_request_meta
from execution_service.tools.stderr_log import LOG_REDACTOR, StderrForwarder
from execution_service.tools.stdio_lines import DEFAULT_MAX_LINE_BYTES, LINE_POLICY, LinePolicy
from execution_service.tools.stdio_lines import install as install_linear_stdio_reads
from execution_service.tools.stream_watch import EndWatchingReceiveStream
from execution_service.tools.wire_repairs import RepairingReceiveStream

install_linear_stdio_reads()

logger = logging.getLogger(__name__)

_CLIENT_INFO = Implementation(name="agentrun", version="0.1.0")
# A result at least this large (characters of text and structured content) is followed by a ping and a release of
# freed memory to the OS (McpConnection._after_large_result).
LARGE_RESULT_CHARS = 1_000_000
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)
# The messages of the -32000 (CONNECTION_CLOSED) errors the SDK's streamable HTTP client (mcp, pinned in
# constraints.txt) makes itself for a request whose SSE stream failed or ended without an answer. The SDK's other
# -32000, "Connection closed", comes only once the transport's stream ended (live.stop is set then); a server's own
# -32000, JSON-RPC's generic server error, is that call's error.
_SDK_SSE_ERRORS = ("SSE stream failed", "SSE stream ended")
# The SDK's message for an HTTP error answer without a JSON-RPC error body (it does not name the status).
_SDK_HTTP_ERROR = "Server returned an error response"
_MAX_TOOL_PAGES = 100
# A server's log levels in ours. Its levels are its opinion of itself, and the server may be anyone's: from warning up
# they are WARNING here (agentrun's ERROR lines are agentrun's own failures); the message keeps the server's level.
_MCP_LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "notice": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.WARNING,
    "critical": logging.WARNING,
    "alert": logging.WARNING,
    "emergency": logging.WARNING,
}


# The shortest time between two listings of a server's tools that notifications/tools/list_changed asks for.
RELIST_INTERVAL_S = 1.0

# Reconnect waits: 0.5 s, doubling up to 30 s, scaled by a random factor in [0.8, 1].
RECONNECT_BACKOFF = Backoff(initial_s=0.5, multiplier=2.0, max_s=30.0, jitter=0.2)


def reconnect_delay_s(backoff: Backoff, failures: int) -> float:
    """The wait before reconnecting after `failures` failures in a row. The first reconnect is immediate: a server
    that crashed once should not fail the very next call; from the second failure in a row on, it backs off."""
    return 0.0 if failures <= 1 else backoff.delay_s(failures - 1)


class ServerUnavailableError(Exception):
    """The server cannot be reached now (not started, crashed, or waiting out a reconnect backoff)."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"MCP server {server!r} is unavailable: {reason}")
        self.server = server
        self.reason = reason


class SessionExpiredError(ServerUnavailableError):
    """An HTTP server no longer knows the session (404, or a JSON-RPC error naming the session): the request reached no
    handler, so it can be sent again on a new session."""


class ToolCallTimeoutError(Exception):
    """The server did not answer a tool call in time. The call was abandoned (and cancelled on the server). `note`:
    what else the server did meanwhile that may explain it ("" or text starting with "; ")."""

    def __init__(self, message: str, note: str = "") -> None:
        super().__init__(message + note)
        self.note = note


class ToolCallFailedError(Exception):
    """The server answered a tool call with a protocol error, or with a result that could not be used."""


class ConnectionState(enum.StrEnum):
    IDLE = "IDLE"
    STARTING = "STARTING"
    READY = "READY"
    DOWN = "DOWN"
    CLOSED = "CLOSED"


@dataclass(eq=False, slots=True)
class _Live:
    """A started session and what it knows; `generation` tells sessions of successive restarts apart."""

    generation: int
    session: ClientSession
    tools: tuple[Tool, ...]
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    # notifications/tools/list_changed: the listing under way, and whether another was asked for meanwhile.
    relisting: asyncio.Task[None] | None = None
    relist_wanted: bool = False


_StartOutcome = _Live | str  # the live session, or why it could not start


@dataclass(frozen=True, slots=True)
class ConnectionTimeouts:
    """connect: transport + initialize + list_tools. call_grace: extra time past a call's own timeout before the
    call is abandoned as hung (covers a write that never completes). health_check: ping after a call timed out.
    shutdown: waiting for an owner task to tear down before cancelling it."""

    connect_s: float = 30.0
    call_grace_s: float = 5.0
    health_check_s: float = 5.0
    shutdown_s: float = 10.0


class McpConnection:
    """A lazily started, self-healing connection to one MCP server."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        backoff: Backoff | None = None,
        timeouts: ConnectionTimeouts | None = None,
        max_message_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._config = config
        self._max_message_bytes = max_message_bytes
        self._backoff = backoff or RECONNECT_BACKOFF
        self._timeouts = timeouts or ConnectionTimeouts()
        self._state = ConnectionState.IDLE
        self._live: _Live | None = None
        self._starting: asyncio.Future[_StartOutcome] | None = None
        self._generation = 0
        self._failures = 0
        self._retry_at = 0.0
        self._last_error = ""
        self._owner_tasks: set[asyncio.Task[None]] = set()
        self._health_checks: dict[int, asyncio.Task[None]] = {}
        self._release_tasks: set[asyncio.Task[None]] = set()
        # The tool list of the last session that started (None before the first start).
        self._known_tools: tuple[Tool, ...] | None = None
        # When the server last wrote a message that could not be read, and why (a call it answered never ends).
        self._unreadable: tuple[float, str] | None = None
        # The transport of the current HTTP session (its last HTTP error status explains the SDK's bare errors).
        self._http_transport: CappedTransport | None = None

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def config(self) -> McpServerConfig:
        return self._config

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def last_error(self) -> str:
        """Why the connection was last lost or failed to start ("" if it never failed)."""
        return self._last_error

    async def start(self, *, wait_s: float = 0.0) -> None:
        """Connects now if not connected, waiting up to `wait_s` for a restart that the backoff holds back. Raises
        ServerUnavailableError."""
        await self._ensure_live(wait_s)

    async def list_tools(self) -> tuple[Tool, ...]:
        """The server's tools as listed when the connection started; while the server cannot be reached, as listed
        by its last session. Raises ServerUnavailableError when it never started."""
        try:
            return (await self._ensure_live()).tools
        except ServerUnavailableError as exc:
            if self._known_tools is None or self._state is ConnectionState.CLOSED:
                raise
            logger.info("MCP server %r is unavailable (%s); its tools as last listed are used", self.name, exc.reason)
            return self._known_tools

    async def call_tool(self, name: str, arguments: dict[str, Any], timeout_s: float) -> CallToolResult:
        """Calls a tool. Raises ServerUnavailableError, ToolCallTimeoutError or ToolCallFailedError; a `CallToolResult`
        with `is_error` set is returned, not raised. Cancelling the caller cancels the call (CancelledError
        propagates) and leaves the connection usable."""
        try:
            return await self._call_once(name, arguments, timeout_s, await self._ensure_live())
        except SessionExpiredError as expired:
            logger.info("MCP server %r: %s; calling %r again on a new session", self.name, expired.reason, name)
            return await self._call_once(name, arguments, timeout_s, await self._ensure_live(wait_s=timeout_s))

    async def _call_once(self, name: str, arguments: dict[str, Any], timeout_s: float, live: _Live) -> CallToolResult:
        scope: anyio.CancelScope | None = None
        clock = asyncio.get_running_loop().time
        sent = clock()
        try:
            with anyio.fail_after(timeout_s + self._timeouts.call_grace_s) as scope:
                result = await live.session.call_tool(
                    name, arguments, read_timeout_seconds=timeout_s, meta=_trace_meta()
                )
        except MCPError as exc:
            raise self._classify_mcp_error(live, name, timeout_s, exc, waited_s=clock() - sent) from exc
        except TimeoutError as exc:
            if scope is not None and scope.cancelled_caught:
                reason = f"no answer to tools/call {name!r} within {timeout_s + self._timeouts.call_grace_s:.1f}s"
                self._connection_lost(live, reason)
                raise ToolCallTimeoutError(f"tool {name!r} did not answer within {timeout_s:g}s") from exc
            reason = f"sending tools/call {name!r} timed out in the transport"
            self._connection_lost(live, reason)
            raise ServerUnavailableError(self.name, reason) from exc
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream, OSError) as exc:
            reason = f"connection broke during tools/call {name!r}: {_describe(exc)}"
            self._connection_lost(live, reason)
            raise ServerUnavailableError(self.name, reason) from exc
        except (RuntimeError, pydantic.ValidationError) as exc:
            # The SDK's checks of the result: output schema mismatch, malformed result, unexpected result kind.
            logger.warning("MCP server %r returned an unusable result for tool %r: %s", self.name, name, exc)
            raise ToolCallFailedError(f"tool {name!r} returned an unusable result: {_describe(exc)}") from exc
        self._failures = 0
        if _result_chars(result) >= LARGE_RESULT_CHARS:
            self._after_large_result(live)
        return result

    async def aclose(self) -> None:
        """Stops the server connection (the subprocess, for stdio) and refuses further use. Idempotent."""
        if self._state is ConnectionState.CLOSED:
            return
        self._state = ConnectionState.CLOSED
        self._last_error = "the connection was closed"
        if self._live is not None:
            self._live.stop.set()
            self._live = None
        for check in [*self._health_checks.values(), *self._release_tasks]:
            check.cancel()
        owners = list(self._owner_tasks)
        if not owners:
            return
        _done, pending = await asyncio.wait(owners, timeout=self._timeouts.shutdown_s)
        for task in pending:
            logger.warning(
                "MCP server %r did not shut down within %.1fs; cancelling it", self.name, self._timeouts.shutdown_s
            )
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=self._timeouts.shutdown_s)

    # -- starting -------------------------------------------------------------------------------------------------

    async def _ensure_live(self, wait_s: float = 0.0) -> _Live:
        """The live session, starting one if needed. During a reconnect backoff: waits for it when it ends within
        half of `wait_s`, else raises ServerUnavailableError at once."""
        if self._state is ConnectionState.CLOSED:
            raise ServerUnavailableError(self.name, "the connection is closed")
        if self._live is not None:
            return self._live
        while self._starting is None and self._state is ConnectionState.DOWN:
            remaining = self._retry_at - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            if remaining > wait_s / 2:
                raise ServerUnavailableError(
                    self.name, f"{self._last_error} (next reconnect attempt in {remaining:.1f}s)"
                )
            logger.info("MCP server %r: waiting %.2fs for its restart", self.name, remaining)
            await asyncio.sleep(remaining)
            wait_s -= remaining
            if self._state is ConnectionState.CLOSED:
                raise ServerUnavailableError(self.name, "the connection is closed")
            if self._live is not None:
                return self._live
        if self._starting is None:
            self._begin_start()
        assert self._starting is not None
        # Shielded: a caller cancelled while waiting must not cancel the start the other waiters share.
        outcome = await asyncio.shield(self._starting)
        if isinstance(outcome, str):
            raise ServerUnavailableError(self.name, outcome)
        return outcome

    def _begin_start(self) -> None:
        self._generation += 1
        self._state = ConnectionState.STARTING
        started: asyncio.Future[_StartOutcome] = asyncio.get_running_loop().create_future()
        self._starting = started
        logger.info("starting MCP server %r (attempt after %d failure(s))", self.name, self._failures)
        # A fresh context: the connection outlives the run whose call happened to start it (trace context etc.).
        task = asyncio.create_task(
            self._own(self._generation, started), name=f"mcp-connection:{self.name}", context=contextvars.Context()
        )
        self._owner_tasks.add(task)
        task.add_done_callback(self._owner_tasks.discard)

    async def _own(self, generation: int, started: asyncio.Future[_StartOutcome]) -> None:
        """The owner task: enters and exits the transport and the session, and holds them open in between."""
        stop = asyncio.Event()
        stream_ended = False
        fault = ""  # why the transport gave the server up (e.g. an oversized message), when it did

        def on_fault(reason: str) -> None:
            nonlocal fault
            fault = reason

        def on_stream_end() -> None:
            nonlocal stream_ended
            stream_ended = True
            stop.set()
            if fault and live is not None:  # before the session fails the calls in flight, so they tell why
                self._connection_lost(live, fault)

        live: _Live | None = None
        stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        try:
            async with AsyncExitStack() as stack:
                # The SDK's stdout reader task inherits this (this task's own context): this server's line cap.
                LINE_POLICY.set(LinePolicy(self._max_message_bytes, self.name, on_fault))
                read_stream, write_stream = await stack.enter_async_context(self._open_transport(stderr_tail))
                repaired = RepairingReceiveStream(read_stream, self.name)
                watched = cast(Any, EndWatchingReceiveStream(repaired, on_stream_end))
                session = await stack.enter_async_context(
                    ClientSession(
                        watched,
                        write_stream,
                        client_info=_CLIENT_INFO,
                        logging_callback=self._on_server_log,
                        message_handler=self._on_message,
                    )
                )
                try:
                    with anyio.fail_after(self._timeouts.connect_s):
                        await session.initialize()
                        tools = await _list_all_tools(session, self.name)
                except TimeoutError:
                    phase = "tools/list" if session.initialize_result is not None else "initialize"
                    raise TimeoutError(
                        f"the server did not finish starting within {self._timeouts.connect_s:g}s (no answer to "
                        f"{phase}; AGENTRUN_MCP_CONNECT_TIMEOUT_S)"
                    ) from None
                live = _Live(generation=generation, session=session, tools=tools, stop=stop)
                if not self._started(started, live):
                    return  # closed while starting
                await stop.wait()
                if stream_ended:
                    reason = fault or "the server closed the connection (process exited or stream broke)"
                    self._connection_lost(live, reason)
                logger.info("closing connection to MCP server %r (generation %d)", self.name, generation)
        except Exception as exc:
            if live is None:
                cause = fault or self._with_http_status(_describe(exc))
                reason = f"could not connect{self._where()}: {cause}{_last_words(stderr_tail)}"
                # The traceback once per outage: reconnect attempts during a long outage log one line each.
                logger.warning("MCP server %r %s", self.name, reason, exc_info=exc if self._failures == 0 else None)
                self._start_failed(generation, started, reason)
            else:
                reason = f"connection ended: {_describe(exc)}"
                logger.warning("MCP server %r %s", self.name, reason, exc_info=exc)
                self._connection_lost(live, reason)
        finally:
            if not started.done():  # cancelled while starting
                self._start_failed(generation, started, "connection start was cancelled")

    async def _on_server_log(self, params: LoggingMessageNotificationParams) -> None:
        """The server's own log notifications (notifications/message) go to our log with the server's name and level
        (at most WARNING: _MCP_LOG_LEVELS)."""
        level = _MCP_LOG_LEVELS.get(params.level, logging.INFO)
        source = f" {params.logger}" if params.logger else ""
        extra = {"mcp_server": self.name, "mcp_level": params.level}
        data = params.data if isinstance(params.data, str) else json.dumps(params.data, default=str)
        logger.log(
            level, "[mcp %s log %s%s] %s", self.name, params.level, source, LOG_REDACTOR.scrub_text(data), extra=extra
        )

    async def _on_message(self, message: Any) -> None:
        """Server notifications we do not act on are ignored; transport faults are logged (the session survives them
        or ends, which the owner notices)."""
        if isinstance(message, Exception):
            logger.warning("MCP server %r transport error: %s", self.name, _describe(message))
            self._unreadable = (asyncio.get_running_loop().time(), _describe(message))
        elif isinstance(message, ToolListChangedNotification) and self._live is not None:
            self._relist_tools_later(self._live)

    def _relist_tools_later(self, live: _Live) -> None:
        """The server said its tools changed (notifications/tools/list_changed): list them again, outside the
        session's receive loop (which the answer needs). One listing at a time, at most one per RELIST_INTERVAL_S:
        notifications that come meanwhile make one more listing after it (a server that notifies in a loop costs one
        listing a second, and the last listing is always the newest). Runs that start later resolve their tools from
        the new list; runs under way keep the tools they started with."""
        live.relist_wanted = True
        if live.relisting is not None and not live.relisting.done():
            return
        task = asyncio.create_task(
            self._relist_tools(live), name=f"mcp-relist:{self.name}", context=contextvars.Context()
        )
        live.relisting = task
        self._release_tasks.add(task)
        task.add_done_callback(self._release_tasks.discard)

    async def _relist_tools(self, live: _Live) -> None:
        while live.relist_wanted and self._live is live:
            live.relist_wanted = False
            started = asyncio.get_running_loop().time()
            try:
                with anyio.fail_after(self._timeouts.connect_s):
                    tools = await _list_all_tools(live.session, self.name)
            except Exception as exc:
                logger.warning(
                    "MCP server %r changed its tools, but listing them again failed (%s): its last list is used",
                    self.name,
                    _describe(exc),
                )
            else:
                if self._live is not live:
                    return  # that session ended meanwhile: its successor listed the tools itself
                live.tools = tools
                self._known_tools = tools
                logger.info(
                    "MCP server %r changed its tools: now %d: %s", self.name, len(tools), [t.name for t in tools]
                )
            if live.relist_wanted:
                await asyncio.sleep(max(RELIST_INTERVAL_S - (asyncio.get_running_loop().time() - started), 0.0))

    def _unread_note(self, waited_s: float) -> str:
        """'; meanwhile ...' when the server wrote an unreadable message during the last `waited_s` seconds (it may
        have been the answer), else ''."""
        if self._unreadable is None or self._unreadable[0] < asyncio.get_running_loop().time() - waited_s:
            return ""
        what = self._unreadable[1][:300]
        return f"; meanwhile the server wrote a message that could not be read (maybe the answer): {what}"

    def _where(self) -> str:
        """' to URL' for an HTTP server (its URL is the first thing to check), '' for a stdio one."""
        return f" to {self._config.shown_url}" if isinstance(self._config, HttpServer) else ""

    @asynccontextmanager
    async def _open_transport(self, stderr_tail: deque[str]) -> AsyncIterator[tuple[Any, Any]]:
        config = self._config
        if isinstance(config, StdioServer):
            params = StdioServerParameters(
                command=resolve_command(config.command),
                args=list(config.args),
                env=dict(config.env) or None,
                cwd=config.cwd,
            )
            async with (
                StderrForwarder(config.name, tail=stderr_tail) as stderr,
                stdio_client(params, errlog=stderr.errlog) as streams,
            ):
                stderr.child_started()
                yield streams
        elif isinstance(config, HttpServer):
            transport = CappedTransport(self._max_message_bytes, config.name)
            self._http_transport = transport
            async with (
                httpx2.AsyncClient(
                    headers=dict(config.headers), timeout=_HTTP_TIMEOUT, transport=transport
                ) as http_client,
                streamable_http_client(
                    config.url, http_client=http_client, max_sse_event_size=self._max_message_bytes
                ) as streams,
            ):
                yield streams
        else:  # pragma: no cover - McpServerConfig is a closed union
            raise TypeError(f"unsupported MCP server config {config!r}")

    def _started(self, started: asyncio.Future[_StartOutcome], live: _Live) -> bool:
        if self._state is ConnectionState.CLOSED:
            started.set_result("the connection is closed")
            return False
        self._live = live
        self._known_tools = live.tools
        self._state = ConnectionState.READY
        self._starting = None
        logger.info("MCP server %r ready with %d tool(s): %s", self.name, len(live.tools), [t.name for t in live.tools])
        started.set_result(live)
        return True

    def _start_failed(self, generation: int, started: asyncio.Future[_StartOutcome], reason: str) -> None:
        if not started.done():
            started.set_result(reason)
        if self._starting is started:
            self._starting = None
        if self._state is ConnectionState.CLOSED or generation != self._generation:
            return
        self._go_down(reason)

    # -- losing the connection ------------------------------------------------------------------------------------

    def _connection_lost(self, live: _Live, reason: str) -> None:
        """Marks the session `live` as dead (once) and tells its owner to tear it down."""
        live.stop.set()
        if self._live is not live:
            return  # already replaced, lost or closed
        self._live = None
        if self._state is not ConnectionState.CLOSED:
            self._go_down(reason)

    def _go_down(self, reason: str) -> None:
        self._failures += 1
        delay = reconnect_delay_s(self._backoff, self._failures)
        self._state = ConnectionState.DOWN
        self._last_error = reason
        self._retry_at = asyncio.get_running_loop().time() + delay
        logger.warning(
            "MCP server %r is down (%s); failure %d, next reconnect attempt allowed in %.2fs",
            self.name,
            reason,
            self._failures,
            delay,
        )

    def _classify_mcp_error(
        self, live: _Live, tool: str, timeout_s: float, exc: MCPError, *, waited_s: float
    ) -> Exception:
        """What an MCPError of a tools/call means. The SDK raises its own -32000 ("Connection closed") and -32001 (the
        read timeout) with the same codes a server may answer with (-32000 is JSON-RPC's generic server error): they
        are told apart by the SDK's message and by whether the timeout had passed."""
        if is_oversized_event(exc.message):
            # One answer over the cap (its SSE stream was dropped); the session and its other calls are fine.
            logger.warning("MCP server %r: %s", self.name, exc.message)
            return ToolCallFailedError(too_large_message(self.name, self._max_message_bytes))
        if self._session_expired(exc, timed_out=waited_s >= timeout_s, waited_s=waited_s):
            reason = f"the server no longer knows the session ({exc.message})"
            self._connection_lost(live, reason)
            return SessionExpiredError(self.name, reason)
        if exc.code == CONNECTION_CLOSED and (live.stop.is_set() or self._sdk_http_stream_error(exc)):
            # If the owner already saw the stream end, its reason says more than "Connection closed".
            known = self._last_error if self._live is not live and live.stop.is_set() else ""
            reason = f"connection lost during tools/call {tool!r}: {known or exc.message}"
            self._connection_lost(live, reason)
            return ServerUnavailableError(self.name, reason)
        if exc.code == REQUEST_TIMEOUT and waited_s >= timeout_s:
            self._check_health_later(live)
            return ToolCallTimeoutError(
                f"tool {tool!r} did not answer within {timeout_s:g}s", self._unread_note(waited_s)
            )
        return ToolCallFailedError(f"server error {exc.code} for tool {tool!r}: {self._with_http_status(exc.message)}")

    def _with_http_status(self, message: str) -> str:
        """`message`, with the HTTP status the server last answered with when the SDK's message has none (it says
        only "Server returned an error response" for a 401, 403 or 500 without a JSON-RPC error body)."""
        if self._http_transport is None or _SDK_HTTP_ERROR not in message:
            return message
        return f"{message} ({self._http_transport.last_error_status or 'no HTTP error status seen'})"

    def _session_expired(self, exc: MCPError, *, timed_out: bool, waited_s: float) -> bool:
        """The SDK's answer to an HTTP 404 ("Session terminated"), or a server's JSON-RPC error naming the session
        in its 404 body (the Python SDK's -32600 "Session not found", the TypeScript SDK's -32001): only when the
        server did answer 404 during the call (a tool's own error that mentions a session is that tool's error, and
        sending the call again would run it twice)."""
        if not isinstance(self._config, HttpServer) or "session" not in exc.message.lower():
            return False
        transport = self._http_transport
        not_found_at = None if transport is None else transport.last_not_found_at
        if not_found_at is None or not_found_at < asyncio.get_running_loop().time() - waited_s:
            return False
        return exc.code == INVALID_REQUEST or (exc.code == REQUEST_TIMEOUT and not timed_out)

    def _sdk_http_stream_error(self, exc: MCPError) -> bool:
        """The SDK's streamable HTTP client's own -32000 for a request whose SSE stream failed or ended without an
        answer (over stdio the SDK's "Connection closed" comes only once the stream ended: live.stop is set)."""
        return isinstance(self._config, HttpServer) and exc.message.startswith(_SDK_SSE_ERRORS)

    def _after_large_result(self, live: _Live) -> None:
        """The SDK's reader and session keep their last message (here a large result) until the next one arrives: a
        ping replaces it with a small one, then the freed memory goes back to the OS (agentrun_core.memory). Runs
        after the caller, which has dropped its own copy by then."""
        task = asyncio.create_task(
            self._release_large_result(live), name=f"mcp-release:{self.name}", context=contextvars.Context()
        )
        self._release_tasks.add(task)
        task.add_done_callback(self._release_tasks.discard)

    async def _release_large_result(self, live: _Live) -> None:
        try:
            with anyio.fail_after(self._timeouts.health_check_s):
                await live.session.send_ping()
        except Exception as exc:
            logger.debug("MCP server %r: ping after a large result failed: %s", self.name, _describe(exc))
        release_free_memory()

    def _check_health_later(self, live: _Live) -> None:
        """After a call timed out: is the server still answering at all? If not, restart it."""
        if live.generation in self._health_checks or self._live is not live:
            return
        task = asyncio.create_task(
            self._check_health(live), name=f"mcp-health:{self.name}", context=contextvars.Context()
        )
        self._health_checks[live.generation] = task
        task.add_done_callback(lambda _: self._health_checks.pop(live.generation, None))

    async def _check_health(self, live: _Live) -> None:
        try:
            with anyio.fail_after(self._timeouts.health_check_s):
                await live.session.send_ping()
        except Exception as exc:
            reason = f"server stopped answering (ping after a timed-out call failed: {_describe(exc)})"
            self._connection_lost(live, reason)
        else:
            logger.debug("MCP server %r answered a ping after a timed-out call", self.name)


def _result_chars(result: CallToolResult) -> int:
    """Characters of a result's text content plus its structured content (a cheap estimate of its size)."""
    chars = sum(len(getattr(block, "text", "")) for block in result.content)
    if isinstance(result.structured_content, dict):
        chars += sum(len(v) for v in result.structured_content.values() if isinstance(v, str))
    return chars


async def _list_all_tools(session: ClientSession, server: str) -> tuple[Tool, ...]:
    """Every page of the server's tool list; a tool listed twice is kept once (its first listing), a cursor that
    comes back (a server paging in a loop) ends the listing, with a warning."""
    tools: dict[str, Tool] = {}
    cursors: set[str] = set()
    result = await session.list_tools()
    while True:
        for tool in result.tools:
            tools.setdefault(tool.name, tool)
        cursor = result.next_cursor
        if cursor is None:
            break
        if cursor in cursors or len(cursors) + 1 >= _MAX_TOOL_PAGES:
            logger.warning(
                "MCP server %r: tool list ended after %d pages (%s)",
                server,
                len(cursors) + 1,
                "its next cursor came back" if cursor in cursors else f"at most {_MAX_TOOL_PAGES} are read",
            )
            break
        cursors.add(cursor)
        result = await session.list_tools(params=PaginatedRequestParams(cursor=cursor))
    return tuple(tools.values())


_STDERR_TAIL_LINES = 5
_STDERR_TAIL_CHARS = 600


def _last_words(stderr_tail: deque[str]) -> str:
    """'; stderr: ...' with the last lines a stdio server wrote before it failed (most useful last), or ''."""
    if not stderr_tail:
        return ""
    text = " | ".join(stderr_tail)
    if len(text) > _STDERR_TAIL_CHARS:
        text = "..." + text[-_STDERR_TAIL_CHARS:]
    return f"; stderr: {text}"


def _describe(exc: BaseException) -> str:
    """A one-line description; exception groups are unwrapped to their leaf exceptions."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "ConnectionState",
    "ConnectionTimeouts",
    "McpConnection",
    "ServerUnavailableError",
    "SessionExpiredError",
    "ToolCallFailedError",
    "ToolCallTimeoutError",
]


def _trace_meta() -> RequestParamsMeta | None:
    """The current trace context (traceparent, tracestate) for the request's `_meta`, so an MCP server that reads
    it joins the run's trace, and the entries of `tool_request_meta` (the durable mode's idempotency key); None
    without either."""
    carrier = current_trace_carrier()
    extra = tool_request_meta.get()
    if extra:
        carrier = {**(carrier or {}), **extra}
    return cast(RequestParamsMeta, carrier) if carrier else None
