"""Faults: RunsService down, an MCP server killed mid-call, the ExecutionService process killed mid-run."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.auth import AuthSettings
from runs_service.config import RunsSettings
from runs_service.server import start_server as start_runs
from tests.fakes.gemini_server import FakeFunctionCall, FakeGemini, FakeResponse, FakeUsage
from tests.support.stack import (
    TEST_MCP_SERVER,
    agent_source,
    free_port,
    mcp_config,
    running_stack,
    steps_of,
    wait_for,
    write_agents,
)


async def test_runs_survive_runs_service_down_for_a_whole_batch(tmp_path: Path) -> None:
    agents = {"plain": agent_source(tools=["test/echo"])}
    async with running_stack(tmp_path, agents, with_runs_service=False) as stack:
        run_ids = []
        for i in range(8):
            events = await stack.execute(agent_name="plain", task=f"run {i}")
            assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
            run_ids.append(events[0].run_started.run_id)
        assert not await stack.execution.flush_outbox(0.5)  # nothing can be delivered yet
        await stack.start_runs()
        assert await stack.execution.flush_outbox(30)
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(page_size=100))
        assert sorted(r.id for r in listed.runs) == sorted(run_ids)
        assert all(r.status == run_pb2.RUN_STATUS_COMPLETED for r in listed.runs)
        full = await stack.runs_stub().GetRun(rs.GetRunRequest(run_id=run_ids[0], view=rs.RUN_VIEW_FULL))
        assert [s.sequence for s in full.run.execution_steps] == list(range(1, len(full.run.execution_steps) + 1))


async def test_mcp_server_killed_mid_call_is_a_tool_error_then_restarted(tmp_path: Path) -> None:
    pid_file = tmp_path / "mcp.pid"
    servers = {
        "victim": {
            "command": sys.executable,
            "args": [str(TEST_MCP_SERVER)],
            "env": {"MCP_TEST_PID_FILE": str(pid_file)},
        }
    }
    agents = {"fragile": agent_source(model="gemini-2.5-flash", tools=["victim/sleep", "victim/echo"])}
    async with running_stack(tmp_path, agents, mcp_servers=servers) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": 30}, id="s1")]),
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "still there?"}, id="e1")]),
            FakeResponse(text="recovered"),
        )
        stub = stack.execution_stub()
        events = []
        async for event in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="fragile", task="sleep")):
            events.append(event)
            is_call = event.WhichOneof("event") == "step" and event.step.WhichOneof("payload") == "tool_call"
            if is_call and event.step.tool_call.call_id == "s1":
                await wait_for(pid_file.exists)
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        results = {
            s.tool_result.call_id: s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result"
        }
        assert results["s1"].is_error and results["s1"].status == run_pb2.TOOL_CALL_STATUS_FAILED
        assert results["s1"].duration.ToTimedelta().total_seconds() < 10
        assert not results["e1"].is_error and "still there?" in results["e1"].result_text
        # The model received the crash as the tool's error, for that call.
        crash = stack.gemini.requests[1].function_response("s1")
        assert crash == {"id": "s1", "name": "sleep", "response": {"error": results["s1"].result_text}}
        assert "victim" in results["s1"].result_text and "connection lost" in results["s1"].result_text
        assert stack.gemini.requests[2].function_response("e1")["response"] == {"result": "still there?"}


async def test_execution_service_killed_mid_run_stores_every_streamed_step_after_restart(tmp_path: Path) -> None:
    runs_port, exec_port = free_port(), free_port()
    runs = await start_runs(
        RunsSettings(
            listen_address=f"127.0.0.1:{runs_port}",
            data_dir=tmp_path / "runs",
            migrate_on_start=True,
            auth=AuthSettings.off(),
        )
    )
    gemini = FakeGemini()
    base_url = await gemini.start()
    gemini.add(
        FakeResponse(
            function_calls=[FakeFunctionCall("echo", {"text": "first"}, id="e1")],
            usage=FakeUsage(prompt=100, candidates=10),
        ),
        FakeResponse(
            text="Now the long one.",
            function_calls=[FakeFunctionCall("sleep", {"seconds": 60}, id="s1")],
            usage=FakeUsage(prompt=150, candidates=20, thoughts=5),
        ),
    )
    write_agents(
        tmp_path / "agents", {"doomed": agent_source(model="gemini-2.5-flash", tools=["test/sleep", "test/echo"])}
    )
    (tmp_path / "mcp.json").write_text(json.dumps(mcp_config()))
    env = {
        **os.environ,
        "AGENTRUN_EXECUTION_ADDRESS": f"127.0.0.1:{exec_port}",
        "AGENTRUN_RUNS_SERVICE_TARGET": f"127.0.0.1:{runs_port}",
        "AGENTRUN_AGENTS_DIR": str(tmp_path / "agents"),
        "AGENTRUN_MCP_CONFIG": str(tmp_path / "mcp.json"),
        "AGENTRUN_DATA_DIR": str(tmp_path / "execution"),
        "GEMINI_API_KEY": "test-key",
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "AGENTRUN_LOG_FORMAT": "json",
        "AGENTRUN_AUTH": "off",
    }
    command = [sys.executable, "-m", "execution_service"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{exec_port}")
    try:
        await channel.channel_ready()
        stub = ex_grpc.ExecutionServiceStub(channel)
        call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="doomed", task="sleep", detach=True))
        run_id = ""
        streamed: list[run_pb2.ExecutionStep] = []
        async for event in call:
            if event.WhichOneof("event") == "run_started":
                run_id = event.run_started.run_id
            if event.WhichOneof("event") == "step":
                streamed.append(event.step)
                if event.step.WhichOneof("payload") == "tool_call" and event.step.tool_call.call_id == "s1":
                    break
        # Streamed so far: model call, echo started, echo result, model call, sleep started. Killed right away.
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        call.cancel()

        runs_channel = grpc.aio.insecure_channel(f"127.0.0.1:{runs_port}")
        runs_stub = rs_grpc.RunsServiceStub(runs_channel)
        stored = await runs_stub.GetRun(rs.GetRunRequest(run_id=run_id))
        assert stored.run.status == run_pb2.RUN_STATUS_RUNNING  # the start was published before the kill

        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            stored = await runs_stub.GetRun(rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL))
            if stored.run.status != run_pb2.RUN_STATUS_RUNNING or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        run = stored.run
        assert run.status == run_pb2.RUN_STATUS_INTERRUPTED
        assert run.error.reason == "INTERRUPTED"
        # It ends when its last streamed step happened, not when the restarted service recovered it (seconds later).
        assert run.end_time == streamed[-1].time
        assert run.execution_steps[-1].time == streamed[-1].time
        duration = run.end_time.ToDatetime() - run.start_time.ToDatetime()
        assert run.duration.ToTimedelta() == duration
        # Every step a client saw is stored as it was streamed, then the error step.
        kinds = [s.WhichOneof("payload") for s in streamed]
        assert kinds == ["model_call", "tool_call", "tool_result", "model_call", "tool_call"]
        assert list(run.execution_steps[: len(streamed)]) == streamed
        assert [s.WhichOneof("payload") for s in run.execution_steps[len(streamed) :]] == ["error"]
        # ... and the totals that go with them.
        assert (run.token_usage.input_tokens, run.token_usage.output_tokens, run.token_usage.thinking_tokens) == (
            250,
            30,
            5,
        )
        assert run.token_usage.total_tokens == 285
        assert run.steps_taken == 2 and list(run.tools_used) == ["echo", "sleep"]
        assert run.cost.amount and run.cost.price_table_version.startswith("genai-prices")
        calls = {c.id: c for c in run.tool_calls}
        assert calls["e1"].status == run_pb2.TOOL_CALL_STATUS_SUCCEEDED and calls["e1"].result == "first"
        assert calls["s1"].status == run_pb2.TOOL_CALL_STATUS_CANCELLED and calls["s1"].is_error
        assert run.max_context_window_used == 150 / 1_048_576
        await runs_channel.close()
    finally:
        await channel.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        await runs.stop(0)
        gemini.stop()
