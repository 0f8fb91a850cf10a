"""A resumed run's run timeout counts the time it executed before it stopped, not the time it was stopped: from its
start to its last step, less the gaps of its earlier resumptions (found by an outside audit: a run resumed twice
counted its first outage, 30 s with the default takeover timeout, against its timeout)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentrun_core.domain import ExecutionStep, ModelCall, RunResumed, StepPayload
from execution_service.durable.stream import StreamPrefix

START = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def step(sequence: int, seconds: float, payload: StepPayload) -> ExecutionStep:
    return ExecutionStep("r", sequence, START + timedelta(seconds=seconds), payload)


def test_a_run_that_never_ran_a_step_used_nothing() -> None:
    assert StreamPrefix().time_executed(START) == timedelta(0)


def test_a_first_resumption_counts_up_to_the_last_step() -> None:
    prefix = StreamPrefix(steps=(step(1, 2, ModelCall("m")), step(2, 5, ModelCall("m"))))
    assert prefix.time_executed(START) == timedelta(seconds=5)


def test_a_second_resumption_does_not_count_the_first_stop() -> None:
    prefix = StreamPrefix(
        steps=(
            step(1, 2, ModelCall("m")),
            step(2, 40, RunResumed(gap=timedelta(seconds=38), replica="b", previous_replica="a")),
            step(3, 43, ModelCall("m")),
        )
    )
    assert prefix.time_executed(START) == timedelta(seconds=5)
