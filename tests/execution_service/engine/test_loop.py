"""The agent loop driven by a scripted model and in-memory tools: every way a turn can end a run, and the steps
each one records. No gRPC, no MCP, no HTTP: what these check is the loop's own logic."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from typing import Any

import pytest

from agentrun_core.backoff import Backoff
from agentrun_core.domain import (
    ErrorReason,
    FinalResponse,
    ModelCall,
    RunStatus,
    StepKind,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallStatus,
)
from execution_service.agents.spec import AgentLimits
from execution_service.engine.control import RunControl
from execution_service.model.base import FunctionResult, ModelError, ModelRequest, ModelResponse, ToolResultMessage
from execution_service.model.retry import ModelRetryPolicy, RetryingProvider
from execution_service.tools.base import ToolOutcome
from tests.execution_service.engine.fakes import (
    FakeTools,
    ScriptedModel,
    answer,
    call,
    ok,
    run_loop,
    tool_error,
)


def kinds(steps: list[Any]) -> list[StepKind]:
    return [step.kind for step in steps]


def results_sent(request: ModelRequest) -> list[FunctionResult]:
    """The function results the model received in this request (those of the turn before)."""
    last = request.messages[-1]
    assert isinstance(last, ToolResultMessage)
    return list(last.results)


# --- the run goes on or ends well ---------------------------------------------------------------------------------


async def test_a_final_answer_completes_the_run() -> None:
    run = await run_loop(ScriptedModel(answer("Lima is UTC-5.")))
    assert run.outcome.status is RunStatus.COMPLETED and run.outcome.error is None
    assert run.outcome.final_response == "Lima is UTC-5."
    assert kinds(run.steps) == [StepKind.MODEL_CALL, StepKind.FINAL_RESPONSE]
    assert run.steps[-1].payload == FinalResponse("Lima is UTC-5.")
    assert [s.sequence for s in run.steps] == [1, 2]


async def test_tool_calls_run_and_their_results_go_back_to_the_model() -> None:
    model = ScriptedModel(answer("", call("echo", "c1", text="hi"), call("add", "c2", a=1, b=2)), answer("done"))
    tools = FakeTools({"echo": ok("hi"), "add": ok("3")})
    run = await run_loop(model, tools)
    assert run.outcome.status is RunStatus.COMPLETED
    steps = kinds(run.steps)
    assert steps[0] is StepKind.MODEL_CALL and steps[-2:] == [StepKind.MODEL_CALL, StepKind.FINAL_RESPONSE]
    # The two calls run concurrently: each result comes after its own start.
    assert sorted(steps[1:5]) == sorted([StepKind.TOOL_CALL] * 2 + [StepKind.TOOL_RESULT] * 2)
    order = [(type(s.payload).__name__, getattr(s.payload, "call_id", "")) for s in run.steps[1:5]]
    assert order.index(("ToolCallStarted", "c1")) < order.index(("ToolCallFinished", "c1"))
    assert [(name, args) for name, args, _ in tools.calls] == [("echo", {"text": "hi"}), ("add", {"a": 1, "b": 2})]
    sent = results_sent(model.requests[1])
    assert [(r.call_id, r.response) for r in sent] == [("c1", {"result": "hi"}), ("c2", {"result": "3"})]
    assert run.recorder.tool_calls == 2 and run.recorder.tools_used == ("echo", "add")
    assert run.recorder.usage == TokenUsage(20, 20, 40)


# --- the model's turn ends the run --------------------------------------------------------------------------------


async def test_max_tokens_fails_the_run_but_keeps_the_text_that_was_cut() -> None:
    run = await run_loop(ScriptedModel(answer("The first half of a long ans", finish="MAX_TOKENS")))
    assert run.outcome.status is RunStatus.FAILED
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.MAX_TOKENS
    assert run.outcome.final_response == "The first half of a long ans"
    assert "final_response" in run.outcome.error.message
    # The text is in the model call step and the run's final response; no FinalResponse step: there is no answer.
    assert kinds(run.steps) == [StepKind.MODEL_CALL]
    model_call = run.steps[0].payload
    assert isinstance(model_call, ModelCall) and model_call.text == "The first half of a long ans"


async def test_a_blocked_prompt_fails_the_run() -> None:
    blocked = ModelResponse(
        model="m", text="", function_calls=(), usage=TokenUsage(), finish_reason="", blocked_reason="SAFETY"
    )
    run = await run_loop(ScriptedModel(blocked))
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.PROMPT_BLOCKED
    assert "SAFETY" in run.outcome.error.message


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("SAFETY", ErrorReason.RESPONSE_BLOCKED),
        ("RECITATION", ErrorReason.RESPONSE_BLOCKED),
        ("MALFORMED_FUNCTION_CALL", ErrorReason.MODEL_FINISH_REASON),
        ("OTHER", ErrorReason.MODEL_FINISH_REASON),
    ],
)
async def test_other_finish_reasons_fail_the_run(finish: str, reason: ErrorReason) -> None:
    run = await run_loop(ScriptedModel(answer("partial", finish=finish, finish_message="because")))
    assert run.outcome.status is RunStatus.FAILED
    assert run.outcome.error is not None and run.outcome.error.reason == reason
    assert finish in run.outcome.error.message and "the provider said: because" in run.outcome.error.message
    assert run.outcome.final_response == ""


@pytest.mark.parametrize("no_candidates", [False, True])
async def test_an_empty_answer_fails_the_run(no_candidates: bool) -> None:
    run = await run_loop(ScriptedModel(answer("  ", no_candidates=no_candidates)))
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.MODEL_EMPTY_RESPONSE
    assert ("no candidate" in run.outcome.error.message) is no_candidates


async def test_the_token_budget_ends_the_run_after_the_turn_that_crossed_it() -> None:
    model = ScriptedModel(answer("", call("echo", text="x"), tokens=30), answer("", call("echo", text="y"), tokens=30))
    run = await run_loop(model, FakeTools({"echo": ok("x")}), limits=AgentLimits(token_budget=100))
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.TOKEN_BUDGET_EXCEEDED
    assert "120 tokens, over its budget of 100" in run.outcome.error.message
    assert len(model.requests) == 2
    assert kinds(run.steps)[-1] is StepKind.MODEL_CALL  # the second turn's tools were not called


async def test_max_steps_ends_the_run_without_running_the_last_turns_tools() -> None:
    tools = FakeTools({"echo": ok("again")})
    model = ScriptedModel(*(answer("", call("echo", f"c{i}", text=str(i))) for i in range(3)))
    run = await run_loop(model, tools, limits=AgentLimits(max_steps=3))
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.MAX_STEPS_EXCEEDED
    assert "3 model calls" in run.outcome.error.message
    assert len(model.requests) == 3 and len(tools.calls) == 2


async def test_cancel_after_turn_stops_before_the_next_model_call() -> None:
    control = RunControl()

    async def echo_then_cancel(arguments: dict[str, Any], timeout_s: float) -> ToolOutcome:
        control.stop_after_turn = True  # CancelRun(AFTER_TURN) arrives while the turn's tools run
        return ok("echoed")

    model = ScriptedModel(answer("", call("echo", text="x")), answer("never asked"))
    run = await run_loop(model, FakeTools({"echo": echo_then_cancel}), control=control)
    assert run.outcome.status is RunStatus.CANCELLED
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.CANCELLED
    assert len(model.requests) == 1
    assert kinds(run.steps) == [StepKind.MODEL_CALL, StepKind.TOOL_CALL, StepKind.TOOL_RESULT]


# --- model errors -------------------------------------------------------------------------------------------------


async def test_a_model_error_fails_the_run_and_its_model_call_step_says_why() -> None:
    error = ModelError(ErrorReason.MODEL_REQUEST_INVALID, "Invalid JSON payload", code=400, status="INVALID_ARGUMENT")
    run = await run_loop(ScriptedModel(error))
    assert run.outcome.status is RunStatus.FAILED
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.MODEL_REQUEST_INVALID
    assert run.outcome.error.message == "400 INVALID_ARGUMENT: Invalid JSON payload"
    step = run.steps[-1].payload
    assert isinstance(step, ModelCall) and step.model == "scripted-model"
    assert [(a.attempt, a.code, a.status, a.reason, a.message) for a in step.failed_attempts] == [
        (1, 400, "INVALID_ARGUMENT", "MODEL_REQUEST_INVALID", "Invalid JSON payload")
    ]
    assert step.failed_attempts[0].wait_before_next is None


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _rate_limited(delay_hint: float | None = None) -> ModelError:
    return ModelError(
        ErrorReason.MODEL_RATE_LIMITED,
        "Resource has been exhausted",
        code=429,
        status="RESOURCE_EXHAUSTED",
        retryable=True,
        retry_after_s=delay_hint,
    )


async def test_retried_attempts_are_recorded_on_the_model_call_that_answered() -> None:
    sleeps = Sleeps()
    model = RetryingProvider(
        ScriptedModel(_rate_limited(7.0), _rate_limited(7.0), _rate_limited(7.0), answer("finally")),
        ModelRetryPolicy(max_attempts=4, backoff=Backoff(max_s=20.0)),
        sleep=sleeps,
        rng=random.Random(1),
    )
    run = await run_loop(model)  # type: ignore[arg-type]
    assert run.outcome.status is RunStatus.COMPLETED
    step = run.steps[0].payload
    assert isinstance(step, ModelCall) and step.text == "finally"
    assert [a.attempt for a in step.failed_attempts] == [1, 2, 3]
    assert {(a.code, a.reason) for a in step.failed_attempts} == {(429, "MODEL_RATE_LIMITED")}
    # Three 429s waited 7 s each (the provider's RetryInfo): the run says so.
    assert [a.wait_before_next for a in step.failed_attempts] == [timedelta(seconds=7)] * 3
    assert sleeps.delays == [7.0, 7.0, 7.0]


async def test_a_call_that_failed_for_good_records_every_attempt_then_the_run_fails() -> None:
    model = RetryingProvider(
        ScriptedModel(_rate_limited(), _rate_limited()),
        ModelRetryPolicy(max_attempts=2, backoff=Backoff(initial_s=0.5, jitter=0.0)),
        sleep=Sleeps(),
    )
    run = await run_loop(model)  # type: ignore[arg-type]
    assert run.outcome.error is not None and run.outcome.error.reason == ErrorReason.MODEL_RATE_LIMITED
    step = run.steps[-1].payload
    assert isinstance(step, ModelCall)
    assert [(a.attempt, a.wait_before_next) for a in step.failed_attempts] == [
        (1, timedelta(seconds=0.5)),
        (2, None),
    ]


# --- tools --------------------------------------------------------------------------------------------------------


async def test_a_tool_error_goes_to_the_model_and_the_run_goes_on() -> None:
    model = ScriptedModel(answer("", call("fail", "c1")), answer("the tool failed, sorry"))
    run = await run_loop(model, FakeTools({"fail": tool_error("disk full")}))
    assert run.outcome.status is RunStatus.COMPLETED
    result = next(s.payload for s in run.steps if isinstance(s.payload, ToolCallFinished))
    assert result.is_error and result.status is ToolCallStatus.FAILED and result.result_text == "disk full"
    assert results_sent(model.requests[1])[0].response == {"error": "disk full"}


async def test_a_tool_timeout_is_a_tool_error_with_the_agents_tool_timeout() -> None:
    async def slow(arguments: dict[str, Any], timeout_s: float) -> ToolOutcome:
        await asyncio.sleep(0)
        return ToolOutcome(
            f"no answer within {timeout_s:g}s",
            is_error=True,
            status=ToolCallStatus.TIMED_OUT,
            error_reason=ErrorReason.TOOL_TIMEOUT,
        )

    tools = FakeTools({"slow": slow})
    model = ScriptedModel(answer("", call("slow", "c1")), answer("it timed out"))
    run = await run_loop(model, tools, limits=AgentLimits(tool_timeout_s=2.5))
    assert tools.calls == [("slow", {}, 2.5)]
    result = next(s.payload for s in run.steps if isinstance(s.payload, ToolCallFinished))
    assert result.status is ToolCallStatus.TIMED_OUT and result.is_error
    assert results_sent(model.requests[1])[0].response == {"error": "no answer within 2.5s"}
    assert run.outcome.status is RunStatus.COMPLETED


async def test_an_unknown_tool_is_a_tool_error_never_a_call() -> None:
    tools = FakeTools({"echo": ok("x")})
    model = ScriptedModel(answer("", call("rm_rf", "c1")), answer("I cannot"))
    run = await run_loop(model, tools)
    assert tools.calls == []
    started = next(s.payload for s in run.steps if isinstance(s.payload, ToolCallStarted))
    assert started.tool_name == "rm_rf" and started.server == ""
    result = next(s.payload for s in run.steps if isinstance(s.payload, ToolCallFinished))
    assert result.is_error and "unknown tool 'rm_rf'" in result.result_text
    assert run.outcome.status is RunStatus.COMPLETED


# --- what a model call step records -------------------------------------------------------------------------------


async def test_context_window_share_is_recorded_per_call_and_its_maximum_per_run() -> None:
    model = ScriptedModel(
        answer("", call("echo", text="x"), tokens=250, input_token_limit=1000),
        answer("done", tokens=600, input_token_limit=1000),
    )
    run = await run_loop(model, FakeTools({"echo": ok("x")}))
    calls = [s.payload for s in run.steps if isinstance(s.payload, ModelCall)]
    assert [(c.input_token_limit, c.context_window_used) for c in calls] == [(1000, 0.25), (1000, 0.6)]
    assert run.recorder.max_context_window_used == 0.6


async def test_an_unknown_input_limit_records_zero() -> None:
    run = await run_loop(ScriptedModel(answer("done", tokens=600)))
    call_step = run.steps[0].payload
    assert isinstance(call_step, ModelCall)
    assert (call_step.input_token_limit, call_step.context_window_used) == (0, 0.0)
    assert run.recorder.max_context_window_used == 0.0


async def test_thoughts_are_recorded_and_scrubbed_like_text() -> None:
    secret = "sk-live-abcdefghijklmnopqrstuvwx"
    run = await run_loop(ScriptedModel(answer("done", thoughts=f"The key {secret} looks valid.")))
    call_step = run.steps[0].payload
    assert isinstance(call_step, ModelCall)
    assert call_step.thoughts == "The key [REDACTED] looks valid."


async def test_the_model_receives_a_tool_result_cut_to_the_agents_limit_with_a_marker() -> None:
    big = "0123456789" * 1000  # 10,000 bytes
    model = ScriptedModel(answer("", call("dump", "c1")), answer("summarised"))
    run = await run_loop(model, FakeTools({"dump": ok(big)}), limits=AgentLimits(tool_result_bytes=1000))
    [sent] = results_sent(model.requests[1])
    text = sent.response["result"]
    assert isinstance(text, str) and text.startswith(big[:1000])
    assert text[1000:] == (
        "\n[agentrun cut this tool result here: it is 10000 bytes long and only the first 1000 are shown "
        "(limits.tool_result_bytes)]"
    )
    stored = next(s.payload for s in run.steps if isinstance(s.payload, ToolCallFinished))
    assert (stored.original_size_bytes, stored.truncated) == (10_000, False)  # under the store's own 64 KiB cap
    assert stored.result_text == big
