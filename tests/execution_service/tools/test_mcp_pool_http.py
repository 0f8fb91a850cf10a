"""McpToolPool against the test MCP server over streamable HTTP (a subprocess on a free local port)."""

from __future__ import annotations

import asyncio
import time

import pytest
from mcp_test_helpers import FAST_BACKOFF, FAST_TIMEOUTS, HttpTestServer, http_test_server

from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.tools.pool import McpToolPool


async def test_echo_and_add_over_streamable_http(http_server: HttpTestServer) -> None:
    async with McpToolPool(
        {"web": http_test_server(http_server.url)}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as pool:
        echo, add = await pool.resolve(["web/echo", "web/add"])
        assert (await pool.call(echo, {"text": "over http"}, timeout_s=5)).text == "over http"
        outcome = await pool.call(add, {"a": 40, "b": 2}, timeout_s=5)
        assert (outcome.text, outcome.structured_json) == ("42", '{"result":42}')

        invalid = await pool.call(add, {"a": 1}, timeout_s=5)
        assert invalid.error_reason is ErrorReason.TOOL_ARGUMENTS_INVALID

        outcomes = await asyncio.gather(*(pool.call(echo, {"text": str(i)}, timeout_s=5) for i in range(10)))
        assert [o.text for o in outcomes] == [str(i) for i in range(10)]


async def test_timeout_over_http_then_next_call_works(http_server: HttpTestServer) -> None:
    async with McpToolPool(
        {"web": http_test_server(http_server.url)}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as pool:
        (sleep,) = await pool.resolve(["web/sleep"])
        outcome = await pool.call(sleep, {"seconds": 30}, timeout_s=0.5)
        assert outcome.status is ToolCallStatus.TIMED_OUT and outcome.error_reason is ErrorReason.TOOL_TIMEOUT
        assert not (await pool.call(sleep, {"seconds": 0.01}, timeout_s=5)).is_error


async def test_unreachable_http_server_is_a_clear_outcome() -> None:
    # Nothing listens on port 9 of the loopback interface.
    async with McpToolPool(
        {"web": http_test_server("http://127.0.0.1:9/mcp")}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as pool:
        servers = await pool.list_servers()
        # The reason names the URL it tried (the first thing to check) and what went wrong there.
        assert isinstance(servers["web"], str)
        assert servers["web"].startswith("could not connect to http://127.0.0.1:9/mcp: "), servers["web"]


async def test_http_server_killed_mid_call_then_back(http_server: HttpTestServer) -> None:
    async with McpToolPool(
        {"web": http_test_server(http_server.url)}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as pool:
        sleep, echo = await pool.resolve(["web/sleep", "web/echo"])
        call = asyncio.create_task(pool.call(sleep, {"seconds": 30}, timeout_s=30))
        await asyncio.sleep(0.5)
        started = time.monotonic()
        http_server.kill()
        outcome = await asyncio.wait_for(call, timeout=10)
        assert time.monotonic() - started < 5.0
        assert outcome.status is ToolCallStatus.FAILED
        assert outcome.error_reason is ErrorReason.TOOL_SERVER_UNAVAILABLE, outcome

        http_server.start()
        deadline = time.monotonic() + 15
        while (result := await pool.call(echo, {"text": "back"}, timeout_s=5)).is_error:
            assert result.error_reason is ErrorReason.TOOL_SERVER_UNAVAILABLE, result
            assert time.monotonic() < deadline, result
            await asyncio.sleep(0.1)
        assert result.text == "back"


@pytest.mark.parametrize("answers", ["sse", "json"])
async def test_http_messages_are_capped_like_stdio_ones(answers: str) -> None:
    """One message from an HTTP server may be as large as AGENTRUN_MCP_MAX_MESSAGE_BYTES (the SDK's own SSE default,
    1 MiB, would refuse a 1.5 MiB result, sent twice in one event: as text and as structured content), and one larger
    fails its call with the size and the setting, leaving the connection usable."""
    cap = 4 * 1024 * 1024
    http_server = HttpTestServer(json_response=answers == "json")
    http_server.start()
    try:
        await _capped_calls(http_server, cap)
    finally:
        http_server.stop()


async def _capped_calls(http_server: HttpTestServer, cap: int) -> None:
    async with McpToolPool(
        {"web": http_test_server(http_server.url)},
        backoff=FAST_BACKOFF,
        timeouts=FAST_TIMEOUTS,
        max_message_bytes=cap,
    ) as pool:
        big, echo = await pool.resolve(["web/big", "web/echo"])
        size = 3 * 512 * 1024
        large = await pool.call(big, {"size": size}, timeout_s=20)
        assert not large.is_error, large
        assert len(large.text) == size

        too_big = await pool.call(big, {"size": cap + 1024}, timeout_s=20)
        assert too_big.is_error and too_big.status is ToolCallStatus.FAILED, too_big
        assert "AGENTRUN_MCP_MAX_MESSAGE_BYTES" in too_big.text, too_big.text
        assert (await pool.call(echo, {"text": "still here"}, timeout_s=5)).text == "still here"


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "Unauthorized"), (403, "Forbidden"), (500, "Internal Server Error")]
)
async def test_an_http_error_answer_is_named_by_its_status(status: int, reason: str) -> None:
    """The SDK says only "Server returned an error response" for an HTTP error without a JSON-RPC body: the error
    names the status, so a wrong token reads as one."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with McpToolPool(
            {"web": http_test_server(f"http://127.0.0.1:{port}/mcp?token=SECRET")},
            backoff=FAST_BACKOFF,
            timeouts=FAST_TIMEOUTS,
        ) as pool:
            servers = await pool.list_servers()
    finally:
        server.close()
    assert isinstance(servers["web"], str)
    assert servers["web"].startswith(f"could not connect to http://127.0.0.1:{port}/mcp?...: "), servers["web"]
    assert servers["web"].endswith(f"(HTTP {status} {reason})"), servers["web"]


async def test_a_call_after_the_server_forgot_the_session_is_made_on_a_new_one(http_server: HttpTestServer) -> None:
    """A restarted HTTP server answers the old session id with 404: the request reached no handler, so the call is
    sent again on a new session instead of failing."""
    async with McpToolPool(
        {"web": http_test_server(http_server.url)}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as pool:
        (echo,) = await pool.resolve(["web/echo"])
        assert (await pool.call(echo, {"text": "one"}, timeout_s=10)).text == "one"
        http_server.kill()
        http_server.start()
        outcome = await pool.call(echo, {"text": "two"}, timeout_s=10)
        assert (outcome.is_error, outcome.text) == (False, "two"), outcome


async def test_a_tool_error_that_mentions_a_session_is_not_sent_again(http_server: HttpTestServer) -> None:
    """Only a 404 means the server forgot the session: a tool's own JSON-RPC error about a "checkout session" at
    HTTP 200 is that call's error, and the call is not made again (it would run twice)."""
    async with McpToolPool(
        {"web": http_test_server(http_server.url)}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as pool:
        (rpc_error,) = await pool.resolve(["web/rpc_error"])
        outcome = await pool.call(rpc_error, {"code": -32600, "message": "checkout session already closed"}, 10)
        assert outcome.error_reason is ErrorReason.TOOL_ERROR, outcome
        assert outcome.text == "server error -32600 for tool 'rpc_error': checkout session already closed"
        assert pool.servers_down() == {}
