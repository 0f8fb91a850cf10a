"""DurableStepRecorder without DBOS: what a resumed run records where its stream already holds steps."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from agentrun_core.domain import ExecutionStep, FinalResponse, RunResumed, TokenUsage, ToolCallFinished, ToolCallStarted
from execution_service.durable.recorder import DurableStepRecorder, ReplayDiverged
from execution_service.model.base import FunctionCall, ModelResponse
from execution_service.redaction import Redactor
from execution_service.tools.base import ResolvedTool, ToolOutcome

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


async def no_flush() -> None:
    return None


def answer(text: str) -> ModelResponse:
    return ModelResponse(model="m", text=text, function_calls=(), usage=TokenUsage(1, 2, 3), finish_reason="STOP")


def recorder(
    recorded: tuple[ExecutionStep, ...], resumed_from: str | None, emitted: list[ExecutionStep]
) -> DurableStepRecorder:
    return DurableStepRecorder(
        "run-1",
        emitted.append,
        Redactor(),
        no_flush,
        replica="replica-b",
        recorded=recorded,
        resumed_from=resumed_from,
        started_at=START,
    )


def first_execution() -> list[ExecutionStep]:
    emitted: list[ExecutionStep] = []
    first = recorder((), None, emitted)
    first.model_call(answer("thinking"), started=START + timedelta(seconds=1), duration=timedelta(seconds=2))
    return emitted


def test_a_resumed_run_keeps_the_streamed_steps_then_marks_the_resumption() -> None:
    streamed = first_execution()
    emitted: list[ExecutionStep] = []
    resumed = recorder(tuple(streamed), "replica-a", emitted)
    assert resumed.replaying
    # The loop records the same model call again (its result was checkpointed), at another time: the stream's copy
    # is kept, with the first execution's time and duration, and its usage counts once.
    resumed.model_call(answer("thinking"), started=datetime.now(UTC), duration=timedelta(0))
    assert emitted[:1] == streamed and not resumed.replaying
    # The replay re-emitted the last step the stream held: the resumption is marked at once, before any new step
    # (a watcher sees it while the call the crash interrupted runs again).
    assert [type(s.payload) for s in emitted[1:]] == [RunResumed]
    assert resumed.usage == TokenUsage(1, 2, 3) and resumed.model_calls == 1
    resumed.final_response("done")
    kinds = [type(s.payload) for s in emitted]
    assert kinds[1:] == [RunResumed, FinalResponse]
    assert [s.sequence for s in emitted] == [1, 2, 3]
    marker = emitted[1].payload
    assert isinstance(marker, RunResumed)
    assert (marker.replica, marker.previous_replica) == ("replica-b", "replica-a")
    # The gap: from the last step the stream held to the resumption.
    assert marker.gap == emitted[1].time - streamed[0].time > timedelta(0)


def test_a_second_resumption_replays_the_first_marker_where_it_is() -> None:
    streamed = first_execution()
    emitted: list[ExecutionStep] = []
    second = recorder(tuple(streamed), "replica-a", emitted)
    second.model_call(answer("thinking"), started=START, duration=timedelta(0))
    second.final_response("done")
    emitted_again: list[ExecutionStep] = []
    third = recorder(tuple(emitted[:2]), "replica-b", emitted_again)  # died after the marker, before the answer
    third.model_call(answer("thinking"), started=START, duration=timedelta(0))
    third.final_response("done")
    assert emitted_again[:2] == emitted[:2]
    assert [type(s.payload) for s in emitted_again[2:]] == [RunResumed, FinalResponse]
    assert [s.sequence for s in emitted_again] == [1, 2, 3, 4]


def test_a_run_that_records_another_step_than_its_stream_holds_is_refused() -> None:
    streamed = first_execution()
    diverged = recorder(tuple(streamed), "replica-a", [])
    with pytest.raises(ReplayDiverged):
        diverged.final_response("not what happened")


async def test_a_new_step_of_a_resumed_turn_waits_until_the_replay_caught_up() -> None:
    """A tool call made again after a crash records its result only once the turn's completed calls replayed theirs
    (they come back from their checkpoints), so it does not take the place of one of theirs in the stream."""
    streamed = first_execution()
    resumed = recorder(tuple(streamed), "replica-a", [])
    waiting = asyncio.create_task(resumed.caught_up(timeout_s=30))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    resumed.model_call(answer("thinking"), started=datetime.now(UTC), duration=timedelta(0))
    await asyncio.wait_for(waiting, 5)
    # A first execution has nothing to replay: nothing waits.
    await asyncio.wait_for(recorder((), None, []).caught_up(timeout_s=30), 1)


async def test_the_function_calls_of_each_recorded_answer_are_announced_before_the_turn_goes_on() -> None:
    announced: list[tuple[str, ...]] = []
    calls = (FunctionCall("c1", "echo", {}), FunctionCall("c2", "sleep", {}))
    emitted: list[ExecutionStep] = []
    first = DurableStepRecorder(
        "run-1",
        emitted.append,
        Redactor(),
        no_flush,
        replica="replica-a",
        function_calls=lambda answered: announced.append(tuple(call.id for call in answered)),
    )
    response = ModelResponse(model="m", text="", function_calls=calls, usage=TokenUsage(), finish_reason="STOP")
    first.model_call(response, started=START, duration=timedelta(0))
    first.model_call(answer("done"), started=START, duration=timedelta(0))
    assert announced == [("c1", "c2"), ()]


ECHO = ResolvedTool(server="test", name="echo", exposed_name="echo", description="", input_schema={})
TURN = ModelResponse(
    model="m",
    text="",
    function_calls=(FunctionCall("a", "echo", {}), FunctionCall("b", "echo", {}), FunctionCall("c", "echo", {})),
    usage=TokenUsage(1, 2, 3),
    finish_reason="STOP",
)


def play(into: DurableStepRecorder, order: list[str]) -> None:
    """The turn's steps in `order`: "+a" call a starts, "-a" its result."""
    for event in order:
        call = event[1:]
        if event[0] == "+":
            into.tool_started(call, ECHO, {"call": call}, time=START)
        else:
            into.tool_finished(call, "echo", ToolOutcome(f"result {call}"), time=START, duration=timedelta(0))


def test_a_turns_calls_replayed_in_another_order_than_streamed_re_emit_the_stream_in_its_order() -> None:
    """Two calls at once at most: c started when a's result freed a slot. Resumed, the checkpointed results come back
    at once and in another order: each call's step is the stream's step of that call, emitted in the stream's order
    once every step before it came back."""
    streamed: list[ExecutionStep] = []
    first = recorder((), None, streamed)
    first.model_call(TURN, started=START, duration=timedelta(0))
    play(first, ["+a", "+b", "-a", "+c", "-b", "-c"])
    emitted: list[ExecutionStep] = []
    resumed = recorder(tuple(streamed), "replica-a", emitted)
    resumed.model_call(TURN, started=START, duration=timedelta(0))
    play(resumed, ["+a", "+b", "-b"])
    assert len(emitted) == 3  # b's result is held until a's comes back: the stream has a's first
    play(resumed, ["+c"])
    assert len(emitted) == 3 and resumed.replaying
    play(resumed, ["-a", "-c"])
    assert emitted[: len(streamed)] == streamed
    assert [type(step.payload) for step in emitted[len(streamed) :]] == [RunResumed]
    resumed.model_call(answer("done"), started=START, duration=timedelta(0))
    assert [step.sequence for step in emitted] == list(range(1, len(streamed) + 3))


def test_a_tool_step_the_streamed_turn_does_not_hold_is_refused() -> None:
    streamed: list[ExecutionStep] = []
    first = recorder((), None, streamed)
    first.model_call(TURN, started=START, duration=timedelta(0))
    play(first, ["+a", "+b", "-a"])
    resumed = recorder(tuple(streamed), "replica-a", [])
    resumed.model_call(TURN, started=START, duration=timedelta(0))
    play(resumed, ["+a"])
    with pytest.raises(ReplayDiverged, match=r"step 3 was a tool_call.*no tool_call of call 'z' \(echo\)"):
        play(resumed, ["+z"])
    # A result is matched by its call, and only within the turn: a's result is there, a second one is not.
    play(resumed, ["-a"])
    with pytest.raises(ReplayDiverged, match="no tool_result of call 'a'"):
        play(resumed, ["-a"])
    assert all(isinstance(step.payload, ToolCallStarted | ToolCallFinished) for step in streamed[1:])


def test_a_call_made_again_after_the_stop_lasts_from_its_first_start() -> None:
    """b was in flight at the stop: made again, its result says how long it held the run, from its first start (the
    stream's) to this result; a, which completed before, keeps its own."""
    streamed: list[ExecutionStep] = []
    first = recorder((), None, streamed)
    first.model_call(TURN, started=START, duration=timedelta(0))
    play(first, ["+a", "+b", "-a"])
    emitted: list[ExecutionStep] = []
    resumed = recorder(tuple(streamed), "replica-a", emitted)
    resumed.model_call(TURN, started=START, duration=timedelta(0))
    play(resumed, ["+a", "+b", "-a"])
    resumed.tool_finished(
        "b", "echo", ToolOutcome("b again"), time=START + timedelta(seconds=10), duration=timedelta(seconds=1)
    )
    result = emitted[-1].payload
    assert isinstance(result, ToolCallFinished) and result.call_id == "b"
    assert result.duration == timedelta(seconds=10)
