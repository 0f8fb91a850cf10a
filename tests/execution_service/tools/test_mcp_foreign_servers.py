"""MCP servers nobody here wrote: a raw JSON-RPC server (tests/fixtures/mcp_raw_server.py) answering the way
third-party servers do. Each of its quirks stays within the call or the tool it concerns: the server's other tools
stay usable and the connection is kept."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mcp_test_helpers import FAST_BACKOFF, FAST_TIMEOUTS

from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.tools.base import ToolOutcome, ToolResolutionError
from execution_service.tools.mcp_config import StdioServer
from execution_service.tools.pool import McpToolPool
from execution_service.tools.stderr_log import LINES_PER_WINDOW

RAW_SERVER = Path(__file__).resolve().parents[2] / "fixtures" / "mcp_raw_server.py"


@pytest.fixture
async def raw_pool() -> AsyncIterator[McpToolPool]:
    server = StdioServer(name="raw", command=sys.executable, args=(str(RAW_SERVER),))
    pool = McpToolPool({"raw": server}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS)
    try:
        yield pool
    finally:
        await pool.aclose()


async def call(pool: McpToolPool, name: str, timeout_s: float = 5.0, **arguments: object) -> ToolOutcome:
    (tool,) = await pool.resolve([f"raw/{name}"])
    return await pool.call(tool, dict(arguments), timeout_s=timeout_s)


@pytest.mark.parametrize("code", [-32000, -32001, -32603, 0])
async def test_a_json_rpc_error_answer_is_that_calls_error_whatever_its_code(raw_pool: McpToolPool, code: int) -> None:
    """-32000 (JSON-RPC's generic server error) and -32001 are also codes the SDK uses for its own "connection closed"
    and "timed out": a server's answer with them is neither."""
    outcome = await call(raw_pool, "fail", code=code, message="quota of the upstream API spent")
    assert outcome.is_error and outcome.status is ToolCallStatus.FAILED
    assert outcome.error_reason is ErrorReason.TOOL_ERROR, outcome
    assert outcome.text == f"server error {code} for tool 'fail': quota of the upstream API spent"
    assert raw_pool.servers_down() == {}  # the connection was not torn down
    assert (await call(raw_pool, "echo", text="still here")).text == "still here"


async def test_tools_with_loose_schemas_are_usable_and_a_broken_tool_costs_only_itself(raw_pool: McpToolPool) -> None:
    """An inputSchema without "type" (or an empty one) is read as the object schema it means; a tool the protocol
    refuses outright (a name that is not a string) is left out, and the server's other tools are there."""
    servers = await raw_pool.list_servers()
    assert sorted(servers["raw"]) == sorted(
        ["echo", "fail", "loose", "bare", "video", "noout", "surrogate", "unreadable", "grow", "storm", "listings"]
    )
    assert (await call(raw_pool, "loose", q="x")).text == 'loose got {"q": "x"}'
    assert (await call(raw_pool, "bare")).text == "bare got {}"


async def test_results_the_sdk_types_refuse_reach_the_model_with_what_they_hold(raw_pool: McpToolPool) -> None:
    video = await call(raw_pool, "video")
    assert not video.is_error, video
    assert video.text.startswith('a clip:\n[content of type "video" that MCP does not define: {"type": "video"')
    noout = await call(raw_pool, "noout")  # declares an outputSchema, answers with text only
    assert (noout.is_error, noout.text) == (False, "42 results found")


async def test_an_answer_with_lone_surrogates_is_read_and_an_unreadable_one_is_named(raw_pool: McpToolPool) -> None:
    """JavaScript's JSON.stringify writes a string cut inside an emoji as a lone surrogate escape, which the SDK's
    parser refuses (the call then waited out its timeout): it is read, with U+FFFD in its place. An answer that is no
    JSON at all still times the call out, and the timeout says what came meanwhile."""
    surrogate = await call(raw_pool, "surrogate", timeout_s=20)
    assert (surrogate.is_error, surrogate.text) == (False, "cut: \ufffd end")
    unreadable = await call(raw_pool, "unreadable", timeout_s=1)
    assert unreadable.status is ToolCallStatus.TIMED_OUT
    assert "meanwhile the server wrote a message that could not be read" in unreadable.text
    assert (await call(raw_pool, "echo", text="after")).text == "after"


async def test_a_server_slow_to_start_names_the_limit_and_the_step_it_did_not_finish() -> None:
    server = StdioServer(
        name="raw", command=sys.executable, args=(str(RAW_SERVER),), env={"RAW_SLOW_INITIALIZE_S": "5"}
    )
    timeouts = dataclasses.replace(FAST_TIMEOUTS, connect_s=0.5)
    async with McpToolPool({"raw": server}, backoff=FAST_BACKOFF, timeouts=timeouts) as pool:
        servers = await pool.list_servers()
    assert servers["raw"] == (
        "could not connect: TimeoutError: the server did not finish starting within 0.5s (no answer to initialize; "
        "AGENTRUN_MCP_CONNECT_TIMEOUT_S)"
    )


async def test_tools_a_server_adds_later_are_resolved_after_it_says_so(raw_pool: McpToolPool) -> None:
    with pytest.raises(ToolResolutionError, match="'late'"):
        await raw_pool.resolve(["raw/late"])
    assert (await call(raw_pool, "grow")).text == "grown"  # the server sends notifications/tools/list_changed
    deadline = time.monotonic() + 10
    while "late" not in (await raw_pool.list_servers())["raw"]:
        assert time.monotonic() < deadline, "the tool list was not read again"
        await asyncio.sleep(0.05)
    assert (await call(raw_pool, "late")).text == "late tool here"


async def test_a_server_paging_its_tool_list_in_a_loop_ends_the_listing() -> None:
    server = StdioServer(name="raw", command=sys.executable, args=(str(RAW_SERVER),), env={"RAW_PAGING_LOOP": "1"})
    async with McpToolPool({"raw": server}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as pool:
        servers = await pool.list_servers()
    assert servers["raw"] == ["echo", "fail"]


async def test_a_servers_stderr_is_logged_redacted_and_within_a_rate(caplog: pytest.LogCaptureFixture) -> None:
    server = StdioServer(name="raw", command=sys.executable, args=(str(RAW_SERVER),), env={"RAW_STDERR_LINES": "1000"})
    with caplog.at_level(logging.INFO, logger="execution_service.tools.stderr_log"):
        async with McpToolPool({"raw": server}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as pool:
            assert "echo" in (await pool.list_servers())["raw"]
    lines = [r.getMessage() for r in caplog.records if r.name == "execution_service.tools.stderr_log"]
    assert len(lines) == LINES_PER_WINDOW + 1, lines[-3:]
    assert "sk-proj-abcdef" not in caplog.text and "token=[REDACTED]" in lines[0]
    assert (
        lines[-1]
        == f"[mcp raw stderr] {1000 - LINES_PER_WINDOW} lines not logged (more than {LINES_PER_WINDOW} in 10 s)"
    )


async def test_a_servers_own_error_saying_connection_closed_is_that_calls_error(raw_pool: McpToolPool) -> None:
    """The SDK's own -32000 "Connection closed" comes only once the stream ended; a server's -32000 with those words
    (about its own upstream) is the call's error, and the server is not restarted."""
    outcome = await call(raw_pool, "fail", code=-32000, message="Connection closed by the upstream database")
    assert (outcome.error_reason, raw_pool.servers_down()) == (ErrorReason.TOOL_ERROR, {}), outcome
    assert (await call(raw_pool, "listings")).text == "1"  # the same process: listed once, never restarted


async def test_a_storm_of_tool_list_changes_makes_a_few_listings_not_one_each(raw_pool: McpToolPool) -> None:
    assert (await call(raw_pool, "storm", n=200)).text == "stormed"
    await asyncio.sleep(2.5)
    listings = int((await call(raw_pool, "listings")).text)
    assert 2 <= listings <= 4, listings  # the first, then at most one a second (before: 201)
