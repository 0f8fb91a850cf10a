"""What a stored model call tells: its failed attempts, the thoughts the agent asked for, and how full its context
window was. The real stack: ExecutionService and RunsService over gRPC, the real google-genai client against the
fake Gemini, the stdio MCP test server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_core.proto_convert import timestamp_to_pb
from tests.fakes.gemini_server import FakeError, FakeFunctionCall, FakeResponse, FakeUsage
from tests.support.stack import agent_source, running_stack, steps_of

GEMINI = "gemini-2.5-flash"


def model_calls(steps: list[run_pb2.ExecutionStep]) -> list[run_pb2.ModelCall]:
    return [s.model_call for s in steps if s.WhichOneof("payload") == "model_call"]


async def test_three_429s_then_an_answer_are_in_the_stored_model_call(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model=GEMINI)}
    async with running_stack(tmp_path, agents, model_retry_max_delay_s=0.2) as stack:
        stack.gemini.add(
            *[FakeError(429, "Resource has been exhausted (e.g. check quota).", retry_delay_s=0.1)] * 3,
            FakeResponse(text="finally", usage=FakeUsage(prompt=10, candidates=2)),
        )
        events = await stack.execute(agent_name="plain", task="hi")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        stored = await stack.stored_run(events[0].run_started.run_id)
    [streamed] = model_calls(steps_of(events))
    [call] = model_calls(list(stored.execution_steps))
    assert streamed == call
    assert call.text == "finally"
    attempts = list(call.failed_attempts)
    assert [a.attempt for a in attempts] == [1, 2, 3]
    assert {(a.code, a.status, a.reason) for a in attempts} == {(429, "RESOURCE_EXHAUSTED", "MODEL_RATE_LIMITED")}
    assert all("exhausted" in a.message for a in attempts)
    # Each waited the provider's RetryInfo (0.1 s); the step's duration covers the attempts and the waits.
    assert [a.wait_before_next.ToTimedelta() for a in attempts] == [timedelta(seconds=0.1)] * 3
    step = next(s for s in stored.execution_steps if s.WhichOneof("payload") == "model_call")
    assert step.duration.ToTimedelta() >= timedelta(seconds=0.3)
    starts = [a.start_time.ToDatetime() for a in attempts]
    assert starts == sorted(starts)


async def test_a_call_that_failed_the_run_is_a_model_call_step_then_the_error(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model=GEMINI)}
    async with running_stack(tmp_path, agents, model_retry_attempts=3) as stack:
        stack.gemini.add(*[FakeError(503, "The model is overloaded.")] * 3)
        events = await stack.execute(agent_name="plain", task="hi")
        finished = events[-1].run_finished
        assert (finished.status, finished.error.reason) == (run_pb2.RUN_STATUS_FAILED, "MODEL_UNAVAILABLE")
        stored = await stack.stored_run(finished.run_id)
    assert [s.WhichOneof("payload") for s in stored.execution_steps] == ["model_call", "error"]
    call = stored.execution_steps[0].model_call
    assert (call.model, call.text, call.finish_reason) == (GEMINI, "", "")
    assert [(a.attempt, a.code, a.reason) for a in call.failed_attempts] == [
        (n, 503, "MODEL_UNAVAILABLE") for n in (1, 2, 3)
    ]
    assert [a.HasField("wait_before_next") for a in call.failed_attempts] == [True, True, False]


async def test_thoughts_the_agent_asked_for_are_streamed_and_stored_redacted(tmp_path: Path) -> None:
    thinking = "config:\n  thinkingConfig: { includeThoughts: true }"
    agents = {
        "thinker": agent_source(model=GEMINI, tools=["test/secret_config"], extra_front_matter=thinking),
        "quiet": agent_source(model=GEMINI),
    }
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(thought="I need the config.", function_calls=[FakeFunctionCall("secret_config", id="c1")]),
            FakeResponse(thought="The password is hunter2-not-a-real-password, do not say it.", text="Done."),
            FakeResponse(thought="never sent: this agent did not ask", text="Hello."),
        )
        events = await stack.execute(agent_name="thinker", task="check the config")
        quiet = await stack.execute(agent_name="quiet", task="hi")
        stored = await stack.stored_run(events[0].run_started.run_id)
    assert [c.thoughts for c in model_calls(steps_of(events))] == [
        "I need the config.",
        "The password is [REDACTED], do not say it.",
    ]
    assert [c.thoughts for c in model_calls(list(stored.execution_steps))] == [
        "I need the config.",
        "The password is [REDACTED], do not say it.",
    ]
    assert "hunter2" not in str(stored)
    [quiet_call] = model_calls(steps_of(quiet))
    assert (quiet_call.text, quiet_call.thoughts) == ("Hello.", "")


async def test_context_window_share_per_call_per_run_and_per_agent(tmp_path: Path) -> None:
    agents = {"reader": agent_source(model="tiny-context", tools=["test/echo"]), "other": agent_source(model=GEMINI)}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.models["tiny-context"] = (1000, 100)
        stack.gemini.add(
            FakeResponse(
                function_calls=[FakeFunctionCall("echo", {"text": "x"}, id="e1")],
                usage=FakeUsage(prompt=300, candidates=5),
            ),
            FakeResponse(text="done", usage=FakeUsage(prompt=850, candidates=5)),
            FakeResponse(text="short", usage=FakeUsage(prompt=100, candidates=5)),
            FakeResponse(text="done again", usage=FakeUsage(prompt=400, candidates=5)),
        )
        first = await stack.execute(agent_name="reader", task="read")
        other = await stack.execute(agent_name="other", task="hi")
        second = await stack.execute(agent_name="reader", task="read less")
        stored = await stack.stored_run(first[0].run_started.run_id)
        await stack.stored_run(second[0].run_started.run_id)
        now = datetime.now(UTC)
        reply = await stack.runs_stub().GetRunStats(
            rs.GetRunStatsRequest(
                start_time=timestamp_to_pb(now - timedelta(hours=1)),
                end_time=timestamp_to_pb(now + timedelta(hours=1)),
                group_by=rs.STATS_GROUP_BY_AGENT,
            )
        )
        assert stack.gemini.model_lookups == {"tiny-context": 1, GEMINI: 1}  # once per model, not per call
    calls = model_calls(list(stored.execution_steps))
    assert [(c.input_token_limit, round(c.context_window_used, 6)) for c in calls] == [(1000, 0.3), (1000, 0.85)]
    assert model_calls(steps_of(first)) == calls
    assert stored.max_context_window_used == 0.85
    [other_call] = model_calls(steps_of(other))
    assert other_call.input_token_limit == 1_048_576
    assert other_call.context_window_used == 100 / 1_048_576
    groups = {g.key: g for g in reply.groups}
    assert groups["reader"].max_context_window_used == 0.85  # the larger of its two runs (0.85, 0.4)
    assert groups["other"].max_context_window_used == 100 / 1_048_576


async def test_lone_surrogates_in_a_reply_become_replacement_characters_not_an_internal_failure(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    """A JSON string may escape a lone UTF-16 surrogate ("\\udc80"), which no UTF-8 store or wire takes: the run
    failed INTERNAL on the function call's arguments. Each becomes U+FFFD, in the tool's arguments and the answer."""
    agents = {"echoer": agent_source(model=GEMINI, tools=["test/echo"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "lone:\udc80, pair:\ud83d\ude00"})]),
            FakeResponse(text="echoed \ud800 it"),
        )
        events = await stack.execute(agent_name="echoer", task="echo")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED, events[-1]
        stored = await stack.stored_run(events[0].run_started.run_id)
    steps = list(stored.execution_steps)
    assert steps == steps_of(events)
    [call] = [s.tool_call for s in steps if s.WhichOneof("payload") == "tool_call"]
    assert json.loads(call.arguments_json) == {"text": "lone:\ufffd, pair:\U0001f600"}
    [result] = [s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result"]
    assert "lone:\ufffd, pair:\U0001f600" in result.result_text and not result.is_error
    assert stored.final_response == "echoed \ufffd it"
