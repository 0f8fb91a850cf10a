"""A stdio MCP server writing one huge line: the call (or the server) fails clearly and memory stays bounded."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp_test_helpers import FAST_BACKOFF, FAST_TIMEOUTS

from agentrun_core.domain import ErrorReason
from execution_service.tools.base import ResolvedTool
from execution_service.tools.mcp_config import StdioServer
from execution_service.tools.pool import McpToolPool

FLOOD_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_flood_server.py"
CAP = 1024 * 1024
LIMIT_TEXT = "over the limit of 1,048,576 bytes on one message (AGENTRUN_MCP_MAX_MESSAGE_BYTES)"


@pytest.fixture
async def flood_pool() -> AsyncIterator[McpToolPool]:
    server = StdioServer(name="flood", command=sys.executable, args=(str(FLOOD_SERVER),))
    pool = McpToolPool({"flood": server}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS, max_message_bytes=CAP)
    try:
        yield pool
    finally:
        await pool.aclose()


async def _tool(pool: McpToolPool, name: str) -> ResolvedTool:
    (tool,) = await pool.resolve([f"flood/{name}"])
    return tool


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def _reset_peak_memory() -> None:
    """Resets the peak (VmHWM) to the current RSS."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs")
async def test_a_100_mb_answer_fails_its_call_with_the_limit_and_memory_stays_bounded(
    flood_pool: McpToolPool,
) -> None:
    flood, echo = await _tool(flood_pool, "flood"), await _tool(flood_pool, "echo")
    _reset_peak_memory()
    before_kb = _memory_kb("VmRSS")
    outcome = await flood_pool.call(flood, {"size": 100_000_000, "shape": "python"}, timeout_s=60)
    peak_growth_mb = (_memory_kb("VmHWM") - before_kb) / 1024
    assert outcome.is_error and outcome.error_reason is not ErrorReason.TOOL_SERVER_UNAVAILABLE, outcome
    assert "100,000,0" in outcome.text and LIMIT_TEXT in outcome.text, outcome.text
    # The old reader held the whole line, its text and the parsed result: hundreds of MB for this one answer.
    assert peak_growth_mb < 40, f"memory peaked {peak_growth_mb:.0f} MB above where it was"
    # The connection stays usable: only that call failed.
    assert (await flood_pool.call(echo, {"text": "still here"}, timeout_s=5)).text == "still here"


async def test_an_answer_with_its_id_at_the_end_fails_its_call_alone(flood_pool: McpToolPool) -> None:
    flood, echo = await _tool(flood_pool, "flood"), await _tool(flood_pool, "echo")
    outcome = await flood_pool.call(flood, {"size": 3 * CAP, "shape": "typescript"}, timeout_s=30)
    assert outcome.is_error and LIMIT_TEXT in outcome.text, outcome
    assert (await flood_pool.call(echo, {"text": "ok"}, timeout_s=5)).text == "ok"


async def test_an_oversized_line_that_answers_nothing_restarts_the_server_with_the_reason(
    flood_pool: McpToolPool,
) -> None:
    flood, echo = await _tool(flood_pool, "flood"), await _tool(flood_pool, "echo")
    started = time.monotonic()
    outcome = await flood_pool.call(flood, {"size": 3 * CAP, "shape": "notification"}, timeout_s=30)
    assert time.monotonic() - started < 15  # failed when the line was given up, not at the call's timeout
    assert outcome.is_error and outcome.error_reason is ErrorReason.TOOL_SERVER_UNAVAILABLE, outcome
    assert LIMIT_TEXT in outcome.text, outcome.text
    deadline = time.monotonic() + 20
    while (answer := await flood_pool.call(echo, {"text": "back"}, timeout_s=5)).is_error:
        assert time.monotonic() < deadline, answer
        await asyncio.sleep(0.05)
    assert answer.text == "back"
