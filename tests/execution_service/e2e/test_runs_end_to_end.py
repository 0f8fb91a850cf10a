"""ExecuteAgent end to end: real google-genai client against the fake Gemini, real MCP subprocesses, a real
RunsService on SQLite. What the client saw streamed must be exactly what is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeError, FakeFunctionCall, FakeResponse, FakeUsage, part_field
from tests.support.stack import agent_source, running_stack, steps_of


def summed(steps: list[run_pb2.ExecutionStep], field: str) -> int:
    return sum(getattr(s.model_call.usage, field) for s in steps if s.WhichOneof("payload") == "model_call")


async def test_test_model_run_streams_every_step_and_stores_the_same_run(tmp_path: Path, mode: dict[str, Any]) -> None:
    agents = {"helper": agent_source(tools=["test/echo", "test/add", "time/get_current_time"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        events = await stack.execute(agent_name="helper", task="use your tools", labels={"env": "test"})
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
        started, finished = events[0].run_started, events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        steps = steps_of(events)
        assert [s.sequence for s in steps] == list(range(1, len(steps) + 1))
        payloads = [s.WhichOneof("payload") for s in steps]
        assert payloads[0] == "model_call" and payloads[-1] == "final_response"
        assert payloads.count("tool_call") == payloads.count("tool_result") == 3
        # A tool call is streamed before its result.
        for call in (s for s in steps if s.WhichOneof("payload") == "tool_call"):
            result_index = next(
                i
                for i, s in enumerate(steps)
                if s.WhichOneof("payload") == "tool_result" and s.tool_result.call_id == call.tool_call.call_id
            )
            assert steps.index(call) < result_index
        results = {s.tool_result.tool_name: s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result"}
        assert not any(r.is_error for r in results.values()), results
        # The time tool was asked for Paris (TestModel fills "timezone" with Europe/Paris) and answered with the
        # current time there.
        calls = {s.tool_call.tool_name: s.tool_call for s in steps if s.WhichOneof("payload") == "tool_call"}
        assert json.loads(calls["get_current_time"].arguments_json) == {"timezone": "Europe/Paris"}
        paris = json.loads(results["get_current_time"].result_json)
        assert paris["timezone"] == "Europe/Paris"
        paris_time = datetime.fromisoformat(paris["datetime"])
        assert paris_time.utcoffset() == datetime.now(ZoneInfo("Europe/Paris")).utcoffset()
        assert abs(paris_time - datetime.now(UTC)) < timedelta(minutes=2)
        assert results["echo"].result_text == "example"
        assert json.loads(results["add"].result_json) == {"result": 2}
        assert finished.final_response.startswith("Called 3 tools: echo -> example; add -> 2; get_current_time -> ")
        assert paris["datetime"] in finished.final_response

        stored = await stack.stored_run(started.run_id)
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED
        assert list(stored.execution_steps) == steps
        assert stored.final_response == finished.final_response != ""
        assert stored.token_usage == finished.token_usage
        assert stored.token_usage.total_tokens == summed(steps, "total_tokens") > 0
        assert stored.agent_version == started.agent_version and stored.agent_version.startswith("sha256:")
        assert stored.labels["env"] == "test"
        assert {t.name for t in stored.tool_calls} == {"echo", "add", "get_current_time"}
        assert list(stored.tools_used) and stored.steps_taken == 2
        assert stored.trace_id == started.trace_id and len(stored.trace_id) == 32


async def test_gemini_run_sums_tokens_over_every_model_call_and_measures_tool_time(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {"sleeper": agent_source(model="googleai/gemini-2.5-flash", tools=["test/sleep", "test/add"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.add(
            FakeResponse(
                function_calls=[FakeFunctionCall("sleep", {"seconds": 0.3}, id="c1")],
                usage=FakeUsage(prompt=100, candidates=10, cached=40, thoughts=5, tool_use_prompt=7),
            ),
            FakeResponse(
                function_calls=[FakeFunctionCall("add", {"a": 2, "b": 3}, id="c2")],
                usage=FakeUsage(prompt=150, candidates=12, cached=0, thoughts=3),
            ),
            FakeResponse(text="slept, and 2 + 3 = 5", usage=FakeUsage(prompt=200, candidates=20, thoughts=1)),
        )
        events = await stack.execute(agent_name="sleeper", task="sleep then add")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert finished.final_response == "slept, and 2 + 3 = 5"
        usage = finished.token_usage
        assert (usage.input_tokens, usage.output_tokens) == (450, 42)
        assert (usage.cached_tokens, usage.thinking_tokens, usage.tool_use_prompt_tokens) == (40, 9, 7)
        steps = steps_of(events)
        sleep_result = next(
            s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result" and s.tool_result.call_id == "c1"
        )
        assert 0.3 <= sleep_result.duration.ToTimedelta().total_seconds() < 5
        add_result = next(
            s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result" and s.tool_result.call_id == "c2"
        )
        assert json.loads(add_result.result_json) == {"result": 5}

        stored = await stack.stored_run(events[0].run_started.run_id)
        assert stored.token_usage == usage
        assert stored.steps_taken == 3
        assert stored.tool_calls[0].duration.ToTimedelta().total_seconds() >= 0.3
        assert stored.cost.amount and stored.cost.price_table_version.startswith("genai-prices")
        # Tool results went back to the model as function responses with the call id, after the call they answer.
        third = stack.gemini.requests[2]
        assert third.roles == ["user", "model", "user", "model", "user"]
        assert third.function_response("c1") == {"id": "c1", "name": "sleep", "response": {"result": "slept 0.3s"}}
        assert third.function_response("c2") == {"id": "c2", "name": "add", "response": {"result": 5}}
        assert [part_field(p, "functionResponse", "function_response")["id"] for p in third.parts(2)] == ["c1"]
        assert [part_field(p, "functionResponse", "function_response")["id"] for p in third.parts(4)] == ["c2"]


async def test_model_answering_429_twice_then_succeeding_completes(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeError(429, "Resource has been exhausted (e.g. check quota)."),
            FakeError(429, "Resource has been exhausted (e.g. check quota)."),
            FakeResponse(text="hello", usage=FakeUsage(prompt=5, candidates=1)),
        )
        events = await stack.execute(agent_name="plain", task="say hello")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert len(stack.gemini.requests) == 3
        # Retries are not steps: one model call step.
        assert [s.WhichOneof("payload") for s in steps_of(events)] == ["model_call", "final_response"]


async def test_model_failing_for_good_fails_the_run_with_the_provider_code_and_message(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents, model_retry_attempts=2) as stack:
        stack.gemini.add(FakeError(503, "The model is overloaded."), FakeError(503, "The model is overloaded."))
        events = await stack.execute(agent_name="plain", task="say hello")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED
        assert finished.error.reason == "MODEL_UNAVAILABLE"
        assert "503" in finished.error.message and "overloaded" in finished.error.message
        stored = await stack.stored_run(finished.run_id)
        assert stored.status == run_pb2.RUN_STATUS_FAILED and stored.error == finished.error
        assert steps_of(events)[-1].WhichOneof("payload") == "error"


async def test_failing_and_schema_invalid_tool_calls_go_back_to_the_model_as_errors(tmp_path: Path) -> None:
    agents = {"careful": agent_source(model="gemini-2.5-flash", tools=["test/*"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(
                function_calls=[
                    FakeFunctionCall("fail", {"message": "disk on fire"}, id="f1"),
                    FakeFunctionCall("add", {"a": "two", "b": 3}, id="f2"),
                    FakeFunctionCall("no_such_tool", {}, id="f3"),
                ]
            ),
            FakeResponse(text="I could not do it"),
        )
        events = await stack.execute(agent_name="careful", task="try")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        results = {
            s.tool_result.call_id: s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result"
        }
        assert results["f1"].is_error and "disk on fire" in results["f1"].result_text
        assert results["f2"].is_error and results["f2"].status == run_pb2.TOOL_CALL_STATUS_FAILED
        assert results["f3"].is_error and "no_such_tool" in results["f3"].result_text
        # The model received each failure as that call's error, never as a result.
        second = stack.gemini.requests[1]
        sent = {call_id: second.function_response(call_id) for call_id in ("f1", "f2", "f3")}
        assert {call_id: r["name"] for call_id, r in sent.items()} == {"f1": "fail", "f2": "add", "f3": "no_such_tool"}
        assert all(r["response"].keys() == {"error"} for r in sent.values()), sent
        assert "disk on fire" in sent["f1"]["response"]["error"]
        invalid = sent["f2"]["response"]["error"]
        assert invalid.startswith("Invalid arguments for tool 'add'") and "two" in invalid, invalid
        assert invalid == results["f2"].result_text
        assert "no_such_tool" in sent["f3"]["response"]["error"]


async def test_secrets_in_tool_results_are_redacted_in_the_stream_and_the_store(tmp_path: Path) -> None:
    agents = {"leaky": agent_source(tools=["test/secret_config"])}
    async with running_stack(tmp_path, agents) as stack:
        events = await stack.execute(agent_name="leaky", task="show config")
        result = next(s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result")
        stored = await stack.stored_run(events[0].run_started.run_id)
        for text in (result.result_text, result.result_json, json.dumps([t.result for t in stored.tool_calls])):
            assert ("hunter2" not in text and "[REDACTED]" in text) or text == ""


async def test_bad_requests_get_clear_statuses(tmp_path: Path) -> None:
    import grpc

    agents = {
        "needs-city": agent_source(
            extra_front_matter="input:\n  schema:\n    city: string\n    days?: integer",
            body="Weather for {{city}} over {{days}} days: {{task}}",
        )
    }
    async with running_stack(tmp_path, agents, max_task_bytes=1000) as stack:
        stub = stack.execution_stub()

        async def status_of(**request: object) -> tuple[grpc.StatusCode, str]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async for _ in stub.ExecuteAgent(ex.ExecuteAgentRequest(**request)):  # type: ignore[arg-type]
                    pass
            return caught.value.code(), caught.value.details() or ""

        code, details = await status_of(agent_name="nope", task="x")
        assert code == grpc.StatusCode.NOT_FOUND and "needs-city" in details
        code, details = await status_of(agent_name="needs-city", task="  ", variables={"city": "Paris"})
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "task" in details
        code, details = await status_of(agent_name="needs-city", task="x" * 1001, variables={"city": "Paris"})
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "1000" in details
        code, details = await status_of(agent_name="needs-city", task="forecast")
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "city" in details
        code, details = await status_of(
            agent_name="needs-city", task="forecast", variables={"city": "Paris", "days": "many"}
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "days" in details
        code, details = await status_of(
            agent_name="needs-city", task="forecast", variables={"city": "Paris"}, run_id="nope"
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "run_id" in details


async def test_list_agents_reports_broken_files_and_serves_the_others(tmp_path: Path) -> None:
    agents = {"good": agent_source(tools=["test/echo"]), "broken": "---\nmodel: [unclosed\n---\nhi\n"}
    async with running_stack(tmp_path, agents) as stack:
        reply = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        assert [a.name for a in reply.agents] == ["good"]
        assert reply.agents[0].limits.max_steps == 25 and reply.agents[0].version.startswith("sha256:")
        assert reply.agents[0].limits.tool_result_bytes == 128 * 1024
        assert len(reply.errors) == 1 and reply.errors[0].path.endswith("broken.prompt") and reply.errors[0].message
        events = await stack.execute(agent_name="good", task="echo something")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
