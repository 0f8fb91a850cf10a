"""McpToolPool against the test MCP server over stdio: resolve, call, and every failure path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from mcp_test_helpers import FAST_BACKOFF, FAST_TIMEOUTS, forget_pid, read_pid, stdio_test_server

from agentrun_core.backoff import Backoff
from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.tools.base import ResolvedTool, ToolOutcome, ToolProvider, ToolResolutionError
from execution_service.tools.mcp_config import StdioServer
from execution_service.tools.pool import McpToolPool
from tests.support.stack import wait_for

ALL_TOOLS = {"echo", "add", "sleep", "log", "picture", "fail", "rpc_error", "crash", "secret_config", "big"}


async def _tool(pool: McpToolPool, name: str) -> ResolvedTool:
    (tool,) = await pool.resolve([f"test/{name}"])
    return tool


async def _call_until_ok(pool: McpToolPool, tool: ResolvedTool, arguments: dict, deadline_s: float) -> ToolOutcome:
    """Calls repeatedly (calls inside the reconnect backoff fail fast) until one succeeds or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while True:
        outcome = await pool.call(tool, arguments, timeout_s=5)
        if not outcome.is_error or time.monotonic() > deadline:
            return outcome
        assert outcome.error_reason is ErrorReason.TOOL_SERVER_UNAVAILABLE, outcome
        await asyncio.sleep(0.05)


def _unavailable(outcome: ToolOutcome) -> bool:
    return (
        outcome.is_error
        and outcome.status is ToolCallStatus.FAILED
        and outcome.error_reason is ErrorReason.TOOL_SERVER_UNAVAILABLE
    )


# -- resolve ---------------------------------------------------------------------------------------------------------


async def test_pool_is_a_tool_provider(pool: McpToolPool) -> None:
    provider: ToolProvider = pool
    assert await provider.resolve([]) == []


async def test_resolve_wildcard_and_single_tool(pool: McpToolPool) -> None:
    tools = await pool.resolve(["test/*"])
    assert {tool.name for tool in tools} == ALL_TOOLS
    assert all(tool.server == "test" and tool.exposed_name == tool.name for tool in tools)

    (echo,) = await pool.resolve(["test/echo", "test/echo"])
    assert echo.description == "Returns the text unchanged."
    assert echo.input_schema["properties"]["text"]["type"] == "string"


async def test_resolve_errors_name_the_problem(pool: McpToolPool) -> None:
    with pytest.raises(ToolResolutionError) as unknown_server:
        await pool.resolve(["nope/echo"])
    assert "'nope'" in str(unknown_server.value) and "configured: test" in str(unknown_server.value)

    with pytest.raises(ToolResolutionError) as unknown_tool:
        await pool.resolve(["test/nope"])
    message = str(unknown_tool.value)
    assert "'nope'" in message and "echo" in message and "add" in message

    with pytest.raises(ToolResolutionError, match="not 'server/tool'"):
        await pool.resolve(["echo"])


async def test_resolve_prefixes_tool_names_shared_between_servers(tmp_path: Path) -> None:
    servers = {"alpha": stdio_test_server("alpha"), "beta": stdio_test_server("beta")}
    async with McpToolPool(servers, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as pool:
        tools = await pool.resolve(["alpha/echo", "beta/echo", "alpha/add"])
        assert [(t.server, t.name, t.exposed_name) for t in tools] == [
            ("alpha", "echo", "alpha_echo"),
            ("beta", "echo", "beta_echo"),
            ("alpha", "add", "add"),
        ]
        outcome = await pool.call(tools[1], {"text": "from beta"}, timeout_s=5)
        assert outcome.text == "from beta"


async def test_unreachable_server_fails_resolution_and_shows_in_list_servers(pool: McpToolPool, tmp_path: Path) -> None:
    broken = StdioServer(name="broken", command=str(tmp_path / "no-such-server"))
    async with McpToolPool(
        {"test": stdio_test_server(), "broken": broken}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS
    ) as two:
        await two.start()  # logs the broken server, does not raise
        with pytest.raises(ToolResolutionError, match="'broken' is not reachable"):
            await two.resolve(["test/echo", "broken/*"])
        servers = await two.list_servers()
        assert set(servers["test"]) == ALL_TOOLS
        assert isinstance(servers["broken"], str) and "no-such-server" in servers["broken"]


async def test_server_that_exits_at_startup_is_reported_with_its_last_stderr_lines(tmp_path: Path) -> None:
    """A server that dies before the MCP handshake: what it wrote to stderr is the most useful part of the reason."""
    script = tmp_path / "exits.py"
    script.write_text(
        "import sys\n"
        "print('starting up', file=sys.stderr)\n"
        "print('fatal: missing config FOO_API_URL', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    dying = StdioServer(name="dying", command=sys.executable, args=(str(script),))
    async with McpToolPool({"dying": dying}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as one:
        await one.start()
        with pytest.raises(ToolResolutionError) as caught:
            await one.resolve(["dying/*"])
        assert "fatal: missing config FOO_API_URL" in str(caught.value)
        servers = await one.list_servers()
        assert (
            isinstance(servers["dying"], str) and "starting up | fatal: missing config FOO_API_URL" in servers["dying"]
        )


# -- calls -----------------------------------------------------------------------------------------------------------


async def test_echo_add_and_other_results(pool: McpToolPool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    echo = await _tool(pool, "echo")
    assert await pool.call(echo, {"text": "hello"}, timeout_s=5) == ToolOutcome(
        text="hello", structured_json='{"result":"hello"}'
    )

    add = await _tool(pool, "add")
    outcome = await pool.call(add, {"a": 2, "b": 3}, timeout_s=5)
    assert (outcome.text, outcome.structured_json, outcome.is_error) == ("5", '{"result":5}', False)
    assert outcome.status is ToolCallStatus.SUCCEEDED and outcome.error_reason is None

    secret = await pool.call(await _tool(pool, "secret_config"), {}, timeout_s=5)
    assert json.loads(secret.structured_json)["api_key"].startswith("sk-test")

    big = await pool.call(await _tool(pool, "big"), {"size": 100_000}, timeout_s=5)
    assert len(big.text.encode()) == 100_000

    # The server's stderr reaches our log, tagged with the server name.
    assert any("[mcp test stderr]" in r.getMessage() and "starting" in r.getMessage() for r in caplog.records)


async def test_a_servers_log_messages_reach_our_log_at_most_as_warnings(
    pool: McpToolPool, caplog: pytest.LogCaptureFixture
) -> None:
    """A server's own log levels are its opinion of itself: its errors and emergencies are warnings in ours (a
    server nobody here wrote must not page whoever watches agentrun's ERROR lines), its level kept in the message."""
    caplog.set_level(logging.DEBUG, logger="execution_service.tools.connection")
    log_tool = await _tool(pool, "log")
    for level in ("debug", "info", "warning", "error", "emergency"):
        assert (await pool.call(log_tool, {"level": level, "message": f"{level} news"}, timeout_s=5)).text == "logged"
    await wait_for(lambda: sum("[mcp test log" in r.getMessage() for r in caplog.records) == 5, timeout_s=5)
    forwarded = {r.getMessage(): r for r in caplog.records if "[mcp test log" in r.getMessage()}
    assert {message: r.levelno for message, r in forwarded.items()} == {
        "[mcp test log debug test-logger] debug news": logging.DEBUG,
        "[mcp test log info test-logger] info news": logging.INFO,
        "[mcp test log warning test-logger] warning news": logging.WARNING,
        "[mcp test log error test-logger] error news": logging.WARNING,
        "[mcp test log emergency test-logger] emergency news": logging.WARNING,
    }
    assert all(getattr(r, "mcp_server", None) == "test" for r in forwarded.values())


async def test_invalid_arguments_are_reported_to_the_model(pool: McpToolPool) -> None:
    add = await _tool(pool, "add")
    outcome = await pool.call(add, {"a": "x"}, timeout_s=5)
    assert outcome.is_error and outcome.status is ToolCallStatus.FAILED
    assert outcome.error_reason is ErrorReason.TOOL_ARGUMENTS_INVALID
    assert "$.a" in outcome.text and "'integer'" in outcome.text
    assert "'b' is a required property" in outcome.text


async def test_tool_error_carries_the_message(pool: McpToolPool) -> None:
    outcome = await pool.call(await _tool(pool, "fail"), {"message": "disk on fire"}, timeout_s=5)
    assert outcome.is_error and outcome.status is ToolCallStatus.FAILED
    assert outcome.error_reason is ErrorReason.TOOL_ERROR
    assert "disk on fire" in outcome.text


async def test_timeout_then_same_connection_still_works(pool: McpToolPool, pid_file: Path) -> None:
    sleep = await _tool(pool, "sleep")
    started = time.monotonic()
    outcome = await pool.call(sleep, {"seconds": 30}, timeout_s=0.5)
    assert time.monotonic() - started < 2.0
    assert outcome.is_error and outcome.status is ToolCallStatus.TIMED_OUT
    assert outcome.error_reason is ErrorReason.TOOL_TIMEOUT
    pid = read_pid(pid_file)

    await asyncio.sleep(0.3)  # the health check (ping) after the timeout succeeds: no restart
    echo = await _tool(pool, "echo")
    assert (await pool.call(echo, {"text": "still here"}, timeout_s=5)).text == "still here"
    assert read_pid(pid_file) == pid


async def test_hung_server_times_out_and_is_restarted(pool: McpToolPool, pid_file: Path) -> None:
    echo = await _tool(pool, "echo")
    pid = read_pid(pid_file)
    os.kill(pid, signal.SIGSTOP)  # the process stays alive but answers nothing
    try:
        started = time.monotonic()
        outcome = await pool.call(echo, {"text": "anyone?"}, timeout_s=0.5)
        assert time.monotonic() - started < 2.0
        assert outcome.status is ToolCallStatus.TIMED_OUT
        forget_pid(pid_file)
        # The failed ping marks the connection dead; a later call starts a new server process.
        recovered = await _call_until_ok(pool, echo, {"text": "back"}, deadline_s=15)
        assert recovered.text == "back"
        assert read_pid(pid_file) != pid
    finally:
        with contextlib.suppress(ProcessLookupError):  # normally killed by the restart already
            os.kill(pid, signal.SIGCONT)


async def test_server_killed_mid_call_fails_fast_then_restarts(pool: McpToolPool, pid_file: Path) -> None:
    sleep, echo = await _tool(pool, "sleep"), await _tool(pool, "echo")
    call = asyncio.create_task(pool.call(sleep, {"seconds": 30}, timeout_s=30))
    pid = read_pid(pid_file)
    await asyncio.sleep(0.3)
    forget_pid(pid_file)
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    outcome = await asyncio.wait_for(call, timeout=5)
    assert time.monotonic() - started < 3.0
    assert _unavailable(outcome), outcome
    assert "connection" in outcome.text.lower()

    recovered = await _call_until_ok(pool, echo, {"text": "again"}, deadline_s=15)
    assert recovered.text == "again"
    assert read_pid(pid_file) != pid


async def test_one_crash_restarts_the_server_for_the_very_next_call(pid_file: Path) -> None:
    slow_backoff = Backoff(initial_s=30.0, jitter=0.0)
    config = {"test": stdio_test_server(pid_file=pid_file)}
    async with McpToolPool(config, backoff=slow_backoff, timeouts=FAST_TIMEOUTS) as pool:
        crash, echo = await _tool(pool, "crash"), await _tool(pool, "echo")
        crashed = await pool.call(crash, {}, timeout_s=5)
        assert _unavailable(crashed), crashed
        outcome = await pool.call(echo, {"text": "back"}, timeout_s=10)
        assert outcome.text == "back" and not outcome.is_error


async def test_calls_within_backoff_fail_fast_with_the_reason(pid_file: Path) -> None:
    slow_backoff = Backoff(initial_s=30.0, jitter=0.0)
    config = {"test": stdio_test_server(pid_file=pid_file)}
    async with McpToolPool(config, backoff=slow_backoff, timeouts=FAST_TIMEOUTS) as pool:
        crash, echo = await _tool(pool, "crash"), await _tool(pool, "echo")
        crashed = await pool.call(crash, {}, timeout_s=5)
        assert _unavailable(crashed), crashed
        # The first reconnect is immediate; a second crash in a row starts the backoff.
        crashed_again = await pool.call(crash, {}, timeout_s=5)
        assert _unavailable(crashed_again), crashed_again

        started = time.monotonic()
        refused = await pool.call(echo, {"text": "x"}, timeout_s=5)
        assert time.monotonic() - started < 0.5
        assert _unavailable(refused)
        assert "next reconnect attempt in" in refused.text and "connection" in refused.text


async def test_a_call_waits_for_a_restart_due_within_half_its_timeout(pid_file: Path) -> None:
    backoff = Backoff(initial_s=1.0, jitter=0.0)
    config = {"test": stdio_test_server(pid_file=pid_file)}
    async with McpToolPool(config, backoff=backoff, timeouts=FAST_TIMEOUTS) as pool:
        crash, echo = await _tool(pool, "crash"), await _tool(pool, "echo")
        assert _unavailable(await pool.call(crash, {}, timeout_s=5))
        assert _unavailable(await pool.call(crash, {}, timeout_s=5))  # second crash in a row: 1 s of backoff
        started = time.monotonic()
        outcome = await pool.call(echo, {"text": "after the restart"}, timeout_s=10)
        assert (outcome.text, outcome.is_error) == ("after the restart", False)
        assert time.monotonic() - started >= 0.5  # it waited for the backoff, then restarted the server


async def test_resolution_during_a_backoff_uses_the_last_tool_list(pid_file: Path) -> None:
    config = {"test": stdio_test_server(pid_file=pid_file)}
    async with McpToolPool(config, backoff=Backoff(initial_s=30.0, jitter=0.0), timeouts=FAST_TIMEOUTS) as pool:
        crash = await _tool(pool, "crash")
        assert _unavailable(await pool.call(crash, {}, timeout_s=5))
        assert _unavailable(await pool.call(crash, {}, timeout_s=5))
        started = time.monotonic()
        tools = await pool.resolve(["test/echo", "test/*"])
        assert time.monotonic() - started < 0.5  # no start attempt: the backoff still runs
        assert {t.name for t in tools} == ALL_TOOLS
        # Each call is a tool error the model can read, not an exception and not a failed run.
        refused = await pool.call(tools[0], {"text": "x"}, timeout_s=5)
        assert _unavailable(refused) and "next reconnect attempt in" in refused.text


async def test_a_server_that_never_started_still_fails_resolution(tmp_path: Path) -> None:
    broken = StdioServer(name="test", command=sys.executable, args=("-c", "import sys; sys.exit(5)"))
    async with McpToolPool({"test": broken}, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as pool:
        with pytest.raises(ToolResolutionError) as caught:
            await pool.resolve(["test/echo"])
    assert caught.value.unavailable


async def test_server_dying_while_idle_is_noticed_before_the_next_call(pool: McpToolPool, pid_file: Path) -> None:
    echo = await _tool(pool, "echo")
    pid = read_pid(pid_file)
    forget_pid(pid_file)
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(1.0)  # the owner sees the stream end; the backoff (<= 0.5 s) elapses
    outcome = await pool.call(echo, {"text": "fresh"}, timeout_s=10)
    assert outcome.text == "fresh", outcome
    assert read_pid(pid_file) != pid


async def test_cancelling_the_caller_cancels_the_call(pool: McpToolPool, pid_file: Path) -> None:
    sleep, echo = await _tool(pool, "sleep"), await _tool(pool, "echo")
    call = asyncio.create_task(pool.call(sleep, {"seconds": 30}, timeout_s=30))
    await asyncio.sleep(0.5)
    pid = read_pid(pid_file)
    started = time.monotonic()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert time.monotonic() - started < 1.0
    assert (await pool.call(echo, {"text": "next"}, timeout_s=5)).text == "next"
    assert read_pid(pid_file) == pid


async def test_ten_concurrent_calls_share_one_connection(pool: McpToolPool, pid_file: Path) -> None:
    echo, sleep = await _tool(pool, "echo"), await _tool(pool, "sleep")
    outcomes = await asyncio.gather(*(pool.call(echo, {"text": f"n{i}"}, timeout_s=5) for i in range(10)))
    assert [o.text for o in outcomes] == [f"n{i}" for i in range(10)]

    started = time.monotonic()
    slept = await asyncio.gather(*(pool.call(sleep, {"seconds": 0.5}, timeout_s=5) for _ in range(10)))
    assert all(not o.is_error for o in slept)
    assert time.monotonic() - started < 3.0  # concurrent, not 10 x 0.5 s in a row


async def test_closed_pool_refuses_calls(pool: McpToolPool) -> None:
    echo = await _tool(pool, "echo")
    await pool.aclose()
    outcome = await pool.call(echo, {"text": "late"}, timeout_s=5)
    assert _unavailable(outcome) and "closed" in outcome.text


async def test_cold_concurrent_calls_start_one_server(pid_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="execution_service.tools.connection")
    config = {"test": stdio_test_server(pid_file=pid_file)}
    async with McpToolPool(config, backoff=FAST_BACKOFF, timeouts=FAST_TIMEOUTS) as pool:
        echo = ResolvedTool(
            server="test", name="echo", exposed_name="echo", description="", input_schema={"type": "object"}
        )
        outcomes = await asyncio.gather(*(pool.call(echo, {"text": str(i)}, timeout_s=20) for i in range(10)))
        assert [o.text for o in outcomes] == [str(i) for i in range(10)]
    starts = [r for r in caplog.records if r.getMessage().startswith("starting MCP server 'test'")]
    assert len(starts) == 1


async def test_aclose_ends_in_flight_calls(pool: McpToolPool) -> None:
    sleep = await _tool(pool, "sleep")
    call = asyncio.create_task(pool.call(sleep, {"seconds": 30}, timeout_s=30))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    await pool.aclose()
    outcome = await asyncio.wait_for(call, timeout=5)
    assert time.monotonic() - started < 5.0
    assert _unavailable(outcome), outcome
