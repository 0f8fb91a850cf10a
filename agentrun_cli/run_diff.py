"""Comparing two stored runs step by step (`agentrun runs diff A B`), e.g. a fork and its original.

Steps are compared by content: the step kind and what the model said and asked for (model name, text, finish
reason, number of function calls), the tools called with their arguments, the tools' results and errors, the final
answer, run errors and session history. Times, durations, token counts, call ids and child run ids are not content:
two runs that made the same calls with the same results in the same order are the same up to there, even when one
replayed the other's recorded replies (a fork) or ran at another time. Nor are resumptions (durable mode's `resumed`
steps): they tell how a run executed, not what it did, and a fork does not repeat its original's. They are left out,
and positions count the steps compared (each step keeps its own sequence).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agentrun.runs.v1 import run_pb2


def step_content(step: run_pb2.ExecutionStep) -> bytes:
    """The step with everything that is not content cleared, serialised deterministically."""
    content = run_pb2.ExecutionStep()
    content.CopyFrom(step)
    for name in ("run_id", "sequence", "time", "duration", "depth"):
        content.ClearField(name)
    kind = content.WhichOneof("payload")
    if kind == "model_call":
        content.model_call.ClearField("usage")
        content.model_call.ClearField("time_to_first_token")
    elif kind == "tool_call":
        content.tool_call.ClearField("call_id")
        content.tool_call.ClearField("child_run_id")
    elif kind == "tool_result":
        for name in ("call_id", "duration", "child_run_id"):
            content.tool_result.ClearField(name)
    return content.SerializeToString(deterministic=True)


def same_step(a: run_pb2.ExecutionStep, b: run_pb2.ExecutionStep) -> bool:
    return step_content(a) == step_content(b)


@dataclass(frozen=True, slots=True)
class StepPair:
    """The runs' steps at one position (1-based); None where a run has no step there."""

    position: int
    a: run_pb2.ExecutionStep | None
    b: run_pb2.ExecutionStep | None

    @property
    def same(self) -> bool:
        return self.a is not None and self.b is not None and same_step(self.a, self.b)


@dataclass(frozen=True, slots=True)
class RunDiff:
    a: run_pb2.Run
    b: run_pb2.Run
    # How many leading steps the runs share; the first difference is at position identical_steps + 1.
    identical_steps: int
    # Every position from the first difference on (empty when the runs' steps are the same).
    pairs: list[StepPair]

    @property
    def first_difference(self) -> int | None:
        return self.identical_steps + 1 if self.pairs else None


def compared_steps(run: run_pb2.Run) -> list[run_pb2.ExecutionStep]:
    """The run's steps that a comparison looks at: all but its resumptions."""
    return [step for step in run.execution_steps if step.WhichOneof("payload") != "resumed"]


def diff_runs(a: run_pb2.Run, b: run_pb2.Run) -> RunDiff:
    steps_a, steps_b = compared_steps(a), compared_steps(b)
    shared = 0
    while shared < min(len(steps_a), len(steps_b)) and same_step(steps_a[shared], steps_b[shared]):
        shared += 1
    pairs = [
        StepPair(
            position=index + 1,
            a=steps_a[index] if index < len(steps_a) else None,
            b=steps_b[index] if index < len(steps_b) else None,
        )
        for index in range(shared, max(len(steps_a), len(steps_b)))
    ]
    return RunDiff(a=a, b=b, identical_steps=shared, pairs=pairs)


def cost_amount(run: run_pb2.Run) -> Decimal | None:
    if not run.HasField("cost") or not run.cost.amount:
        return None
    try:
        return Decimal(run.cost.amount)
    except InvalidOperation:
        return None


def relation(a: run_pb2.Run, b: run_pb2.Run) -> str:
    """How the runs are related, when one was forked from the other (else "")."""
    if b.HasField("forked_from") and b.forked_from.run_id == a.id:
        return f"B was forked from A at step {b.forked_from.sequence}"
    if a.HasField("forked_from") and a.forked_from.run_id == b.id:
        return f"A was forked from B at step {a.forked_from.sequence}"
    return ""
