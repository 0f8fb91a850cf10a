"""McpToolPool: the ToolProvider over MCP servers. One pooled connection per configured server, shared by all runs.

- `resolve(["time/get_current_time", "git/*"])` turns an agent's tool patterns into ResolvedTools with names the
  model can use (see naming.py); a server that is down (restarting, in backoff) resolves from its last tool list.
- `call(tool, arguments, timeout_s)` checks the arguments against the tool's input schema, calls the tool, and
  returns a ToolOutcome; failures (tool error, timeout, server down) are outcomes, never exceptions. Cancelling the
  calling task cancels the call and propagates CancelledError.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
from mcp.types import Tool

from agentrun_core.backoff import Backoff
from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.tools.arguments import ArgumentValidator
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolResolutionError
from execution_service.tools.connection import (
    ConnectionState,
    ConnectionTimeouts,
    McpConnection,
    ServerUnavailableError,
    ToolCallFailedError,
    ToolCallTimeoutError,
)
from execution_service.tools.mcp_config import McpServerConfig, load_mcp_config
from execution_service.tools.naming import exposed_names
from execution_service.tools.results import outcome_from_result
from execution_service.tools.stdio_lines import DEFAULT_MAX_LINE_BYTES

logger = logging.getLogger(__name__)

_WILDCARD = "*"


class McpToolPool:
    """Implements execution_service.tools.base.ToolProvider."""

    def __init__(
        self,
        servers: Mapping[str, McpServerConfig],
        *,
        backoff: Backoff | None = None,
        timeouts: ConnectionTimeouts | None = None,
        max_message_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self._connections = {
            name: McpConnection(config, backoff=backoff, timeouts=timeouts, max_message_bytes=max_message_bytes)
            for name, config in servers.items()
        }
        self._validator = ArgumentValidator()

    @classmethod
    def from_config_file(
        cls,
        path: str | Path,
        *,
        environ: Mapping[str, str] | None = None,
        backoff: Backoff | None = None,
        timeouts: ConnectionTimeouts | None = None,
        max_message_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> McpToolPool:
        """Builds a pool from an mcp.json file. Raises McpConfigError."""
        servers = load_mcp_config(path, environ)
        return cls(servers, backoff=backoff, timeouts=timeouts, max_message_bytes=max_message_bytes)

    @property
    def server_names(self) -> list[str]:
        return list(self._connections)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connects to every server now rather than on first use. Failures are logged, not raised."""
        outcomes = await asyncio.gather(*(self._tools_or_error(name) for name in self._connections))
        for name, outcome in zip(self._connections, outcomes, strict=True):
            if isinstance(outcome, str):
                logger.warning("MCP server %r did not start: %s", name, outcome)

    async def aclose(self) -> None:
        """Shuts every connection down (stdio servers are stopped). Idempotent."""
        await asyncio.gather(*(connection.aclose() for connection in self._connections.values()))

    def servers_down(self) -> dict[str, str]:
        """The servers that are down now (they failed to start, crashed, or wait out a restart backoff), each with
        its last error; without starting or asking any server (servers not started yet are not listed)."""
        return {
            name: connection.last_error or "down"
            for name, connection in self._connections.items()
            if connection.state is ConnectionState.DOWN
        }

    async def list_servers(self) -> dict[str, list[str] | str]:
        """For diagnostics: each server's tool names, or why it is not available."""
        outcomes = await asyncio.gather(*(self._tools_or_error(name) for name in self._connections))
        return {
            name: outcome if isinstance(outcome, str) else [tool.name for tool in outcome]
            for name, outcome in zip(self._connections, outcomes, strict=True)
        }

    # -- resolve ---------------------------------------------------------------------------------------------------

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        """The tools matching `server/tool` or `server/*` patterns, in pattern order, without duplicates.

        Raises ToolResolutionError naming every bad pattern: malformed, unknown server (and which exist), unreachable
        server (and why), unknown tool (and which tools the server has).
        """
        problems: list[str] = []
        parsed: list[tuple[str, str, str]] = []
        for pattern in patterns:
            server, sep, tool = pattern.partition("/")
            if not sep or not server or not tool:
                problems.append(f"tool pattern {pattern!r} is not 'server/tool' or 'server/*'")
            elif server not in self._connections:
                known = ", ".join(sorted(self._connections)) or "none"
                problems.append(f"tool pattern {pattern!r} names unknown MCP server {server!r} (configured: {known})")
            else:
                parsed.append((pattern, server, tool))

        servers = list(dict.fromkeys(server for _, server, _ in parsed))
        listings = dict(
            zip(servers, await asyncio.gather(*(self._tools_or_error(server) for server in servers)), strict=True)
        )
        selected: dict[tuple[str, str], Tool] = {}
        unavailable = False
        for pattern, server, tool_name in parsed:
            listing = listings[server]
            if isinstance(listing, str):
                problems.append(f"tool pattern {pattern!r}: MCP server {server!r} is not reachable: {listing}")
                unavailable = True
                continue
            by_name = {listed.name: listed for listed in listing}
            if tool_name == _WILDCARD:
                for listed in listing:
                    if _needs_task_augmentation(listed):
                        logger.info(
                            "MCP server %r: tool %r left out of %r: it requires task-augmented calls, which agentrun "
                            "does not make",
                            server,
                            listed.name,
                            pattern,
                        )
                        continue
                    selected.setdefault((server, listed.name), listed)
            elif tool_name in by_name and _needs_task_augmentation(by_name[tool_name]):
                problems.append(
                    f"MCP server {server!r}: tool {tool_name!r} requires task-augmented calls (execution.taskSupport "
                    "'required'), which agentrun does not make"
                )
            elif tool_name in by_name:
                selected.setdefault((server, tool_name), by_name[tool_name])
            else:
                available = ", ".join(sorted(by_name)) or "none"
                problems.append(f"MCP server {server!r} has no tool {tool_name!r} (it has: {available})")
        if problems:
            raise ToolResolutionError("; ".join(problems), unavailable=unavailable)

        names = exposed_names(list(selected))
        return [
            ResolvedTool(
                server=server,
                name=tool.name,
                exposed_name=exposed,
                description=tool.description or tool.title or "",
                input_schema=tool.input_schema,
            )
            for ((server, _), tool), exposed in zip(selected.items(), names, strict=True)
        ]

    async def _tools_or_error(self, server: str) -> tuple[Tool, ...] | str:
        try:
            return await self._connections[server].list_tools()
        except ServerUnavailableError as exc:
            return exc.reason

    # -- call ------------------------------------------------------------------------------------------------------

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        """Calls the tool; see the module docstring. `timeout_s` bounds the whole call, including waiting for a
        server that is starting (or restarting after a backoff that ends within half of it)."""
        label = f"{tool.server}/{tool.name}"
        connection = self._connections.get(tool.server)
        if connection is None:
            logger.warning("tool call %s: unknown MCP server %r", label, tool.server)
            return _failed(f"unknown MCP server {tool.server!r}", ErrorReason.TOOL_NOT_FOUND)
        problems = self._validator.problems(tool.server, tool.name, tool.input_schema, arguments)
        if problems:
            logger.info("tool call %s: invalid arguments: %s", label, problems)
            return _failed(
                f"Invalid arguments for tool {tool.exposed_name!r}: " + "; ".join(problems),
                ErrorReason.TOOL_ARGUMENTS_INVALID,
            )
        if timeout_s <= 0:
            return _timed_out(f"tool {tool.exposed_name!r} was not called: no time left (timeout {timeout_s:g}s)")

        started = time.monotonic()
        try:
            with anyio.fail_after(timeout_s):
                await connection.start(wait_s=timeout_s)
        except TimeoutError:
            reason = f"MCP server {tool.server!r} is still starting after {timeout_s:g}s"
            logger.warning("tool call %s: %s", label, reason)
            return _failed(reason, ErrorReason.TOOL_SERVER_UNAVAILABLE)
        except ServerUnavailableError as exc:
            logger.warning("tool call %s: %s", label, exc)
            return _failed(str(exc), ErrorReason.TOOL_SERVER_UNAVAILABLE)

        remaining = max(timeout_s - (time.monotonic() - started), 0.001)
        try:
            result = await connection.call_tool(tool.name, arguments, remaining)
        except ServerUnavailableError as exc:
            logger.warning("tool call %s: %s", label, exc)
            return _failed(str(exc), ErrorReason.TOOL_SERVER_UNAVAILABLE)
        except ToolCallTimeoutError as exc:
            logger.warning("tool call %s timed out after %.2fs: %s", label, time.monotonic() - started, exc)
            return _timed_out(
                f"tool {tool.exposed_name!r} (MCP server {tool.server!r}) did not answer within {timeout_s:g}s"
                f"{exc.note}"
            )
        except ToolCallFailedError as exc:
            logger.warning("tool call %s failed: %s", label, exc)
            return _failed(str(exc), ErrorReason.TOOL_ERROR)
        outcome = outcome_from_result(result)
        logger.debug(
            "tool call %s finished in %.3fs (is_error=%s)", label, time.monotonic() - started, outcome.is_error
        )
        return outcome


def _failed(text: str, reason: ErrorReason) -> ToolOutcome:
    return ToolOutcome(text=text, is_error=True, status=ToolCallStatus.FAILED, error_reason=reason)


def _timed_out(text: str) -> ToolOutcome:
    return ToolOutcome(text=text, is_error=True, status=ToolCallStatus.TIMED_OUT, error_reason=ErrorReason.TOOL_TIMEOUT)


def _needs_task_augmentation(tool: Tool) -> bool:
    """MCP 2025-11-25 tools may demand task-augmented calls; a plain tools/call to them always fails."""
    execution = getattr(tool, "execution", None)
    return getattr(execution, "task_support", None) == "required"
