"""A model (or a proxy in front of it) that repeats its own function call ids, numbering every turn's calls `call_0`
again: each call is still recorded as its own call (its steps, its summary row, its sub-agent run, its stats), under
an id unique within the run, while the model gets its results back under the ids it gave, in the run, in a fork of
it and in its session's next run (both modes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, function_results_in
from tests.support.stack import agent_named_in, named_agent_source, running_stack, steps_of


def respond(body: dict[str, Any]) -> FakeResponse:
    if agent_named_in(body) == "helper":
        return FakeResponse(text="helper done")
    match function_results_in(body):
        case 0:
            return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "one"}, id="call_0")])
        case 1:
            return FakeResponse(function_calls=[FakeFunctionCall("helper", {"task": "help"}, id="call_0")])
        case 2:
            calls = [FakeFunctionCall("echo", {"text": text}, id="call_0") for text in ("two", "three")]
            return FakeResponse(function_calls=calls)
        case _:
            return FakeResponse(text="boss done")


def function_responses(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        part["functionResponse"].get("response", {})
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if "functionResponse" in part
    ]


def function_response_ids(body: dict[str, Any]) -> list[str]:
    return [
        part["functionResponse"].get("id", "")
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if "functionResponse" in part
    ]


async def test_repeated_model_call_ids_are_recorded_as_distinct_calls(tmp_path: Path, mode: dict[str, Any]) -> None:
    agents = {
        "boss": named_agent_source("boss", tools=["test/echo", "agents/helper"]),
        "helper": named_agent_source("helper"),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(respond)
        events = await stack.execute(agent_name="boss", task="go", session_id="repeats")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        run_id = finished.run_id

        expected = [("call_0", "echo"), ("call_0~2", "helper"), ("call_0~3", "echo"), ("call_0~4", "echo")]
        streamed = [
            (s.tool_call.call_id, s.tool_call.tool_name)
            for s in steps_of(events)
            if s.run_id == run_id and s.WhichOneof("payload") == "tool_call"
        ]
        assert streamed == expected

        stored = await stack.stored_run(run_id)
        assert [(c.id, c.name) for c in stored.tool_calls] == expected
        assert [c.status for c in stored.tool_calls] == [run_pb2.TOOL_CALL_STATUS_SUCCEEDED] * 4
        assert sorted(c.result for c in stored.tool_calls if c.name == "echo") == ["one", "three", "two"]

        tree = await stack.runs_stub().GetRun(rs.GetRunRequest(run_id=run_id, include_descendants=True))
        assert [(child.parent_tool_call_id, child.final_response) for child in tree.descendants] == [
            ("call_0~2", "helper done")
        ]

        # The model got every result back under the id it gave.
        boss_requests = [r.body for r in stack.gemini.requests if agent_named_in(r.body) == "boss"]
        assert function_response_ids(boss_requests[-1]) == ["call_0"] * 4

        # A fork names a call by its recorded id; its replayed history gives the model its own ids back, each call
        # with its own result.
        last_result = max(s.sequence for s in stored.execution_steps if s.WhichOneof("payload") == "tool_result")
        overrides = ex.ForkOverrides(tool_results={"call_0~3": "edited"})
        request = ex.ForkRunRequest(run_id=run_id, from_sequence=last_result, overrides=overrides)
        forked = [event async for event in stack.execution_stub().ForkRun(request)]
        assert forked[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED, forked[-1].run_finished.error
        live = stack.gemini.requests[-1]
        assert function_response_ids(live.body) == ["call_0"] * 4
        assert function_responses(live.body)[2] == {"result": "edited"}

        # A session's next run gets the earlier run's turns under the model's own ids too.
        stack.gemini.set_responder(lambda body: FakeResponse(text="again done"))
        await stack.execute(agent_name="boss", task="again", session_id="repeats")
        assert function_response_ids(stack.gemini.requests[-1].body) == ["call_0"] * 4
