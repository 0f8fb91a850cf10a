"""Tools that fail well: an MCP server restarting after crashes never fails a run, and a huge result reaches the
model cut (with a marker it can read), while the stream and the store keep their own cap."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeGemini, FakeResponse
from tests.support.stack import agent_source, free_port, mcp_config, running_stack, steps_of, write_agents

GEMINI = "gemini-2.5-flash"


def results(events: list[ex.ExecuteAgentResponse]) -> dict[str, run_pb2.ToolCallFinished]:
    return {s.tool_result.call_id: s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result"}


async def test_a_server_in_restart_backoff_never_fails_a_run(tmp_path: Path) -> None:
    agents = {
        "crasher": agent_source(model=GEMINI, tools=["test/crash", "test/echo"]),
        "echoer": agent_source(model=GEMINI, tools=["test/echo"]),
        "impatient": agent_source(model=GEMINI, tools=["test/echo"], limits={"tool_timeout": "0.1s"}),
    }
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            # Run 1: the server crashes four times in a row: the first reconnect is immediate, then the backoff
            # doubles from 0.5 s (1.6-2 s after the fourth crash).
            *[FakeResponse(function_calls=[FakeFunctionCall("crash", id=f"k{i}")]) for i in range(4)],
            FakeResponse(text="it keeps crashing"),
            # Run 2, during the backoff: a tool too short-tempered to wait for the restart gets a tool error.
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "now?"}, id="i1")]),
            FakeResponse(text="the server is restarting"),
            # Run 3, right after: only calls a healthy tool of that server; it waits for the restart.
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "still there?"}, id="e1")]),
            FakeResponse(text="yes"),
        )
        crashed = await stack.execute(agent_name="crasher", task="crash it")
        assert crashed[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert all(r.is_error for r in results(crashed).values())

        impatient = await stack.execute(agent_name="impatient", task="echo")
        finished = impatient[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        refused = results(impatient)["i1"]
        assert refused.is_error and "next reconnect attempt in" in refused.result_text
        assert stack.gemini.requests[6].function_response("i1")["response"] == {"error": refused.result_text}

        echoed = await stack.execute(agent_name="echoer", task="echo")
        finished = echoed[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert not results(echoed)["e1"].is_error and results(echoed)["e1"].result_text == "still there?"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the service's RSS from /proc")
async def test_a_20_mb_result_reaches_the_model_cut_and_memory_comes_back(tmp_path: Path) -> None:
    size = 20_000_000
    gemini = FakeGemini()
    base_url = await gemini.start()

    def model(body: dict[str, Any]) -> FakeResponse:
        """Calls big(size) from the task, then answers; the task is the user text."""
        contents = body.get("contents") or []
        if any("functionResponse" in p or "function_response" in p for p in contents[-1].get("parts", [])):
            return FakeResponse(text="done")
        wanted = int(contents[0]["parts"][0]["text"])
        return FakeResponse(function_calls=[FakeFunctionCall("big", {"size": wanted}, id="b1")])

    gemini.set_responder(model)
    write_agents(tmp_path / "agents", {"reader": agent_source(model=GEMINI, tools=["test/big"])})
    (tmp_path / "mcp.json").write_text(json.dumps(mcp_config()))
    port = free_port()
    env = {
        **os.environ,
        "AGENTRUN_EXECUTION_ADDRESS": f"127.0.0.1:{port}",
        "AGENTRUN_RUNS_SERVICE_TARGET": f"127.0.0.1:{free_port()}",  # nobody there: records wait in the outbox
        "AGENTRUN_AGENTS_DIR": str(tmp_path / "agents"),
        "AGENTRUN_MCP_CONFIG": str(tmp_path / "mcp.json"),
        "AGENTRUN_DATA_DIR": str(tmp_path / "execution"),
        "GEMINI_API_KEY": "test-key",
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "AGENTRUN_AUTH": "off",
        "AGENTRUN_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen([sys.executable, "-m", "execution_service"], env=env, stderr=subprocess.DEVNULL)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await channel.channel_ready()
            stub = ex_grpc.ExecutionServiceStub(channel)

            async def run(result_size: int) -> list[ex.ExecuteAgentResponse]:
                request = ex.ExecuteAgentRequest(agent_name="reader", task=str(result_size))
                return [event async for event in stub.ExecuteAgent(request)]

            await run(1000)  # warm-up: every code path loaded, the MCP server started
            await asyncio.sleep(0.5)
            before = _rss_mb(proc.pid)
            for _ in range(3):
                events = await run(size)
                assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
            await asyncio.sleep(1.0)  # the release after a large result runs after the call
            after = _rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        gemini.stop()
    # The model received the first 128 KiB (limits.tool_result_bytes) and a marker saying how much was cut.
    response = gemini.requests[-1].function_response("b1")["response"]["result"]
    assert len(response.encode()) < 132 * 1024
    assert response.startswith("0123456789abcdef")
    assert response.endswith(f"it is {size} bytes long and only the first 131072 are shown (limits.tool_result_bytes)]")
    # The stream (and the store) keep their own cap (64 KiB), with the size the tool returned.
    result = results(events)["b1"]
    assert (result.truncated, result.original_size_bytes) == (True, size)
    assert len(result.result_text.encode()) < 65 * 1024
    # Memory comes back: three 20 MB results leave the service's RSS within 100 MB of where it was.
    assert after - before < 100, f"RSS {before:.0f} MB before, {after:.0f} MB after three 20 MB results"
