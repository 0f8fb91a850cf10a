"""Tools that fail well: an MCP server restarting after crashes never fails a run, and a huge result reaches the
model cut (with a marker it can read), while the stream and the store keep their own cap."""

from __future__ import annotations

from pathlib import Path

from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse
from tests.support.stack import agent_source, running_stack, steps_of

GEMINI = "gemini-2.5-flash"


def results(events: list) -> dict[str, run_pb2.ToolCallFinished]:  # type: ignore[type-arg]
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
