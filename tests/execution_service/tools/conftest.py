"""Fixtures for the MCP tool tests: the test MCP server (tests/fixtures/mcp_test_server.py) over stdio and HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp_test_helpers import FAST_BACKOFF, FAST_TIMEOUTS, HttpTestServer, stdio_test_server

from execution_service.tools.pool import McpToolPool


@pytest.fixture
def pid_file(tmp_path: Path) -> Path:
    return tmp_path / "server.pid"


@pytest.fixture
async def pool(pid_file: Path) -> AsyncIterator[McpToolPool]:
    tool_pool = McpToolPool(
        {"test": stdio_test_server(pid_file=pid_file)}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    )
    try:
        yield tool_pool
    finally:
        await tool_pool.aclose()


@pytest.fixture
def http_server() -> Iterator[HttpTestServer]:
    server = HttpTestServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
