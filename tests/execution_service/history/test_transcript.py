"""A stored run as conversation turns, and a session's history cut to a token limit."""

from __future__ import annotations

from datetime import UTC, datetime

from agentrun_core.domain import (
    ExecutionStep,
    FinalResponse,
    ModelAttempt,
    ModelCall,
    Run,
    RunError,
    RunStatus,
    StepPayload,
    ToolCallFinished,
    ToolCallStarted,
)
from execution_service.history.session import UnreadRun, fit_history
from execution_service.history.transcript import run_turns
from execution_service.model.base import FunctionCall, FunctionResult, ModelMessage, ToolResultMessage, UserMessage

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def stored(run_id: str, task: str, *payloads: StepPayload, status: RunStatus = RunStatus.COMPLETED) -> Run:
    steps = tuple(ExecutionStep(run_id, i, T0, p) for i, p in enumerate(payloads, start=1))
    return Run(id=run_id, agent_name="a", status=status, start_time=T0, task=task, execution_steps=steps)


def test_a_model_turn_holds_its_calls_from_the_started_steps_and_their_stored_results() -> None:
    run = stored(
        "r1",
        "add and echo",
        ModelCall("m", text="on it", function_call_count=2),
        ToolCallStarted("c1", "add", "test", '{"a": 1, "b": 2}'),
        ToolCallStarted("c2", "echo", "test", '{"text": "hi"}'),
        ToolCallFinished("c2", "echo", result_text="hi"),
        ToolCallFinished("c1", "add", result_text="3", result_json='{"result": 3}'),
        ModelCall("m", text="3 and hi"),
        FinalResponse("3 and hi"),
    )
    turns = run_turns(run, lambda server, tool: f"{server}_{tool}")
    assert [(t.run_id, t.sequence) for t in turns] == [("r1", 0), ("r1", 1), ("r1", 6)]
    assert turns[0].messages == (UserMessage("add and echo"),)
    calls = (
        FunctionCall("c1", "test_add", {"a": 1, "b": 2}),
        FunctionCall("c2", "test_echo", {"text": "hi"}),
    )
    assert turns[1].messages == (
        ModelMessage("on it", calls),
        ToolResultMessage(
            (FunctionResult("c1", "test_add", {"result": 3}), FunctionResult("c2", "test_echo", {"result": "hi"}))
        ),
    )
    assert turns[2].messages == (ModelMessage("3 and hi"),)
    assert turns[0].tokens == 3  # "add and echo": 12 characters


def test_failed_model_calls_and_turns_missing_a_result_make_no_turn_and_errors_stay_errors() -> None:
    attempt = ModelAttempt(1, "MODEL_UNAVAILABLE", "503", T0, T0 - T0)
    run = stored(
        "r1",
        "try",
        ModelCall("m", function_call_count=1),
        ToolCallStarted("c1", "fail", "test", "{}"),
        ToolCallFinished("c1", "fail", result_text="it failed", is_error=True),
        ModelCall("m", function_call_count=1),
        ToolCallStarted("c2", "sleep", "test", '{"seconds": 9}'),  # cancelled: no result recorded
        ModelCall("m", failed_attempts=(attempt,)),
        RunError("MODEL_UNAVAILABLE", "503"),
        status=RunStatus.FAILED,
    )
    turns = run_turns(run)
    assert [t.sequence for t in turns] == [0, 1]
    assert turns[1].messages[1] == ToolResultMessage((FunctionResult("c1", "fail", {"error": "it failed"}, True),))


def test_the_history_is_cut_at_a_task_oldest_first_and_says_what_it_dropped() -> None:
    old = run_turns(stored("r1", "x" * 40, ModelCall("m", text="y" * 40)))  # 10 + 10 tokens
    new = run_turns(stored("r2", "q" * 8, ModelCall("m", text="a" * 8)))  # 2 + 2 tokens
    history = fit_history("s", [old, new], 15, [UnreadRun("r0", 3)])
    assert history.messages == (UserMessage("q" * 8), ModelMessage("a" * 8))
    step = history.step
    assert (step.run_ids, step.turn_count, step.token_count, step.token_limit) == (("r2",), 2, 4, 15)
    assert (step.dropped_run_ids, step.dropped_turn_count) == (("r0", "r1"), 5)
    assert step.first_turn is not None and (step.first_turn.run_id, step.first_turn.sequence) == ("r2", 0)
    # Everything fits: nothing dropped; nothing fits: an empty history that says so.
    assert fit_history("s", [old, new], 100, []).step.dropped_turn_count == 0
    empty = fit_history("s", [old, new], 3, [])
    assert empty.messages == () and empty.step.first_turn is None and empty.step.dropped_turn_count == 4
