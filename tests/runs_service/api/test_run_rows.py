"""Property: the fast path (protobuf -> rows) stores exactly what protobuf -> domain -> rows stored, and refuses
exactly what RecordRun's conversion and validation refused, with the same field and message."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from agentrun.runs.v1 import run_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentrun_core import domain as d
from agentrun_core.ids import new_run_id
from agentrun_core.proto_convert import ConversionError, run_from_pb, run_to_pb
from runs_service.api.run_rows import rows_from_pb
from runs_service.errors import InvalidArgument
from runs_service.storage.rows import RunRows, run_to_rows
from runs_service.validation import validate_rows, validate_run
from tests.runs_service.api.test_roundtrip_property import runs
from tests.support.run_factory import make_run

Outcome = tuple[str, str] | RunRows


def through_domain(msg: run_pb2.Run) -> Outcome:
    """What RecordRun did before the fast path: convert, validate, build rows."""
    try:
        run = run_from_pb(msg)
        validate_run(run)
        return run_to_rows(run)
    except ConversionError as exc:
        return exc.field, str(exc)
    except OverflowError:
        return "run", "run: holds a timestamp or duration out of range (years 1-9999)"
    except InvalidArgument as exc:
        return exc.field, exc.message


def fast(msg: run_pb2.Run) -> Outcome:
    """What RecordRun does: rows straight from protobuf, then the rules (runs_service.recording)."""
    try:
        rows = rows_from_pb(msg)
        validate_rows(rows)
        return rows
    except InvalidArgument as exc:
        return exc.field, exc.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(run=runs())
def test_drawn_runs_give_the_same_rows_and_hash(run: d.Run) -> None:
    # A fresh id, as the round-trip test does: hypothesis may draw the run's own id for its parent.
    run_id = new_run_id()
    steps = tuple(dataclasses.replace(s, run_id=run_id) for s in run.execution_steps)
    msg = run_to_pb(dataclasses.replace(run, id=run_id, execution_steps=steps))
    # (The strategy can draw a few invalid runs, e.g. a cost with descendants past 15 digits: refused alike.)
    assert fast(msg) == through_domain(msg)


def _set(path: str, value: Any) -> Callable[[run_pb2.Run], None]:
    def apply(msg: run_pb2.Run) -> None:
        *parents, name = path.split(".")
        target: Any = msg
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        setattr(target, name, value)

    return apply


def _clear(path: str) -> Callable[[run_pb2.Run], None]:
    def apply(msg: run_pb2.Run) -> None:
        *parents, name = path.split(".")
        target: Any = msg
        for part in parents:
            target = target[int(part)] if part.isdigit() else getattr(target, part)
        target.ClearField(name)

    return apply


def _add_attempt(step: int, attempt: int, duration_s: int, start_s: int, wait: bool) -> Callable[[run_pb2.Run], None]:
    def apply(msg: run_pb2.Run) -> None:
        model_call = msg.execution_steps[step].model_call  # sets the payload when the step held another kind
        added = model_call.failed_attempts.add(attempt=attempt, code=429, status="RESOURCE_EXHAUSTED", reason="x")
        added.duration.seconds = duration_s
        added.start_time.seconds = start_s
        if wait:
            added.wait_before_next.seconds = 2

    return apply


INTS = st.sampled_from([-(2**40), -1, 0, 1, 7, 2**31 - 1])
SHARES = st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.1, float("nan"), float("inf")])
# Beyond what a datetime / timedelta holds (the domain path raises OverflowError there).
HUGE = st.sampled_from([2**62, -(2**62), 90_000_000_000_000])
NANOS = st.sampled_from([-(2**31), -1_000_000_000, -999_999_999, -1, 0, 999_999_999, 1_000_000_000, 2**31 - 1])
SECONDS = st.sampled_from([-(2**40), -62_135_596_801, -1, 0, 1_800_000_000, 253_402_300_800, 2**40])
STRINGS = st.sampled_from(
    ["", "x", "a\x00b", "x" * 300, "0190a0f0-0000-7000-8000-000000000001", "12.5", "-3", "NaN", "chat-1"]
)


@st.composite
def mutations(draw: st.DrawFn) -> list[Callable[[run_pb2.Run], None]]:
    step = draw(st.integers(0, 39))
    call = draw(st.integers(0, 14))
    choices = [
        _set("id", draw(STRINGS)),
        _set("agent_name", draw(STRINGS)),
        _set("user", draw(STRINGS)),
        _set("task", draw(STRINGS)),
        _set("status", draw(st.integers(0, 8))),
        _set("steps_taken", draw(INTS)),
        _set("start_time.seconds", draw(SECONDS)),
        _clear("start_time"),
        _clear("end_time"),
        _set("end_time.seconds", draw(SECONDS)),
        _set("start_time.nanos", draw(NANOS)),
        _set("end_time.nanos", draw(NANOS)),
        _set("duration.nanos", draw(NANOS)),
        _set(f"execution_steps.{step}.time.nanos", draw(NANOS)),
        _set(f"execution_steps.{step}.tool_result.duration.nanos", draw(NANOS)),
        _set(f"tool_calls.{call}.start_time.nanos", draw(NANOS)),
        _set("duration.seconds", draw(INTS | HUGE)),
        _set("token_usage.total_tokens", draw(INTS)),
        _set("cost.amount", draw(STRINGS)),
        _set("cost.currency_code", draw(STRINGS)),
        _set("error.reason", draw(STRINGS)),
        _set(f"execution_steps.{step}.sequence", draw(INTS)),
        _set(f"execution_steps.{step}.run_id", draw(STRINGS)),
        _set(f"execution_steps.{step}.duration.nanos", draw(st.sampled_from([-1, 0, 5]))),
        _set(f"execution_steps.{step}.time.seconds", draw(SECONDS)),
        _clear(f"execution_steps.{step}.time"),
        _set(f"execution_steps.{step}.model_call.usage.input_tokens", draw(INTS)),
        _set(f"execution_steps.{step}.model_call.time_to_first_token.seconds", draw(INTS | HUGE)),
        _set(f"execution_steps.{step}.tool_call.call_id", draw(STRINGS)),
        _set(f"execution_steps.{step}.tool_result.status", draw(st.integers(0, 7))),
        _set(f"execution_steps.{step}.tool_result.duration.seconds", draw(INTS | HUGE)),
        _set(f"execution_steps.{step}.duration.seconds", draw(HUGE)),
        _set(f"execution_steps.{step}.final_response.text", draw(STRINGS)),
        _set(f"tool_calls.{call}.id", draw(STRINGS)),
        _set(f"tool_calls.{call}.name", draw(STRINGS)),
        _set(f"tool_calls.{call}.status", draw(st.integers(0, 7))),
        _set(f"tool_calls.{call}.duration.seconds", draw(INTS | HUGE)),
        _clear(f"tool_calls.{call}.start_time"),
        _set(f"tool_calls.{call}.start_time.seconds", draw(SECONDS)),
        # Composition (issue 12's fields): tree, session, fork, totals, a step's depth and child run.
        _set("parent_run_id", draw(STRINGS)),
        _set("root_run_id", draw(STRINGS)),
        _set("parent_tool_call_id", draw(STRINGS)),
        _set("depth", draw(INTS)),
        _set("session_id", draw(STRINGS)),
        _set("forked_from.run_id", draw(STRINGS)),
        _set("forked_from.sequence", draw(INTS)),
        _set("token_usage_with_descendants.output_tokens", draw(INTS)),
        _set("cost_with_descendants.amount", draw(STRINGS)),
        _set(f"execution_steps.{step}.depth", draw(INTS)),
        _set(f"execution_steps.{step}.tool_call.child_run_id", draw(STRINGS)),
        _set(f"execution_steps.{step}.session_history.session_id", draw(STRINGS)),
        # Issue 9's record: context window shares, token limits, failed attempts.
        _set("max_context_window_used", draw(SHARES)),
        # Issue 10's admission queue.
        _set("queue_duration.seconds", draw(INTS | HUGE)),
        _set("queue_duration.nanos", draw(st.sampled_from([-1, 0, 5]))),
        _set(f"execution_steps.{step}.model_call.context_window_used", draw(SHARES)),
        _set(f"execution_steps.{step}.model_call.input_token_limit", draw(INTS)),
        _set(f"execution_steps.{step}.model_call.thoughts", draw(STRINGS)),
        _add_attempt(step, draw(INTS), draw(INTS | HUGE), draw(SECONDS), draw(st.booleans())),
    ]
    return draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(changes=mutations(), status=st.sampled_from(list(d.RunStatus)))
def test_malformed_runs_are_refused_alike(changes: list[Callable[[run_pb2.Run], None]], status: d.RunStatus) -> None:
    msg = run_to_pb(make_run(status=status, seed=1))
    for change in changes:
        try:
            change(msg)
        except (ValueError, TypeError, IndexError):  # a value the field cannot hold: skip that change
            continue
    assert fast(msg) == through_domain(msg)
