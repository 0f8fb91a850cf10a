"""The rows that store a run, built straight from its protobuf message (RecordRun's and RecordRuns' fast path).

`rows_from_pb(msg)` equals `run_to_rows(run_from_pb(msg))` (same rows, same record hash: a run recorded through
either path is UNCHANGED when replayed through the other) and raises the same InvalidArgument for a malformed message
as that conversion would, without building the domain values in between: protobuf -> domain -> rows cost ~2x the
CPU of this on a 40-step run. A property test holds the two equal (tests/runs_service/api/test_run_rows.py). The
rules of a valid run are then checked on these rows by runs_service.recording (runs_service.validation.validate_rows).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from agentrun.runs.v1 import run_pb2

from agentrun_core.echo import shown
from agentrun_core.ids import run_id_problem
from agentrun_core.proto_convert import (
    ConversionError,
    cost_amount_from_pb,
    duration_problem,
    run_from_pb,
    run_status_problem,
    share_problem,
    timestamp_problem,
    token_counts_from_pb,
    tool_status_problem,
)
from runs_service import validation_composition as composition
from runs_service.errors import InvalidArgument
from runs_service.storage.rows import RunRows, canonical_record, max_context_window_used
from runs_service.validation import check_no_nul

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_RUN_STATUS = {
    run_pb2.RUN_STATUS_RUNNING: "RUNNING",
    run_pb2.RUN_STATUS_COMPLETED: "COMPLETED",
    run_pb2.RUN_STATUS_FAILED: "FAILED",
    run_pb2.RUN_STATUS_CANCELLED: "CANCELLED",
    run_pb2.RUN_STATUS_TIMED_OUT: "TIMED_OUT",
    run_pb2.RUN_STATUS_INTERRUPTED: "INTERRUPTED",
    run_pb2.RUN_STATUS_QUEUED: "QUEUED",
}
_TOOL_STATUS = {
    run_pb2.TOOL_CALL_STATUS_RUNNING: "RUNNING",
    run_pb2.TOOL_CALL_STATUS_SUCCEEDED: "SUCCEEDED",
    run_pb2.TOOL_CALL_STATUS_FAILED: "FAILED",
    run_pb2.TOOL_CALL_STATUS_TIMED_OUT: "TIMED_OUT",
    run_pb2.TOOL_CALL_STATUS_CANCELLED: "CANCELLED",
}


def _invalid(field: str, problem: str) -> InvalidArgument:
    """What RecordRun answers for a ConversionError(field, problem) (runs_service.api.errors)."""
    return InvalidArgument(field, problem)


def _time(value: Any, field: str) -> datetime:
    # The checks and arithmetic of agentrun_core.proto_convert.timestamp_from_pb (microseconds, nanos floored).
    problem = timestamp_problem(value)
    if problem is not None:
        raise _invalid(field, problem)
    return _EPOCH + timedelta(microseconds=value.seconds * 1_000_000 + value.nanos // 1000)


def _micros(value: Any, field: str) -> int:
    # The checks of agentrun_core.proto_convert.duration_from_pb (which keep it within datetime.timedelta's range).
    problem = duration_problem(value)
    if problem is not None:
        raise _invalid(field, problem)
    return int(value.seconds * 1_000_000 + value.nanos // 1000)


def _usage(value: run_pb2.TokenUsage, field: str) -> dict[str, int]:
    try:
        return token_counts_from_pb(value, field)
    except ConversionError as exc:
        raise _invalid(exc.field, exc.problem) from None


def _cost_amount(value: run_pb2.Cost, field: str = "run.cost") -> Decimal:
    try:
        return cost_amount_from_pb(value, field)
    except ConversionError as exc:
        raise _invalid(exc.field, exc.problem) from None


def _totals_with_descendants(msg: run_pb2.Run) -> dict[str, Any] | None:
    """runs.totals_with_descendants (as storage.rows builds it), None when the run has neither total."""
    totals: dict[str, Any] = {}
    if msg.HasField("token_usage_with_descendants"):
        totals["token_usage"] = _usage(msg.token_usage_with_descendants, "run.token_usage_with_descendants")
    if msg.HasField("cost_with_descendants"):
        cost = msg.cost_with_descendants
        amount = _cost_amount(cost, "run.cost_with_descendants")
        totals["cost"] = {
            "amount": format(amount, "f"),
            "currency_code": cost.currency_code or "USD",
            "price_table_version": cost.price_table_version,
        }
    return totals or None


def _session_history(value: run_pb2.SessionHistory) -> dict[str, Any]:
    first = value.first_turn
    return {
        "session_id": value.session_id,
        "run_ids": list(value.run_ids),
        "turn_count": value.turn_count,
        "first_turn": {"run_id": first.run_id, "sequence": first.sequence} if value.HasField("first_turn") else None,
        "dropped_turn_count": value.dropped_turn_count,
        "dropped_run_ids": list(value.dropped_run_ids),
        "token_limit": value.token_limit,
        "token_count": value.token_count,
    }


def _attempt(msg: run_pb2.ModelAttempt, field: str) -> dict[str, Any]:
    """A failed model attempt as storage.rows writes it, checked as proto_convert.model_attempt_from_pb checks it."""
    if msg.attempt < 1:
        raise _invalid(f"{field}.attempt", f"must be at least 1, got {msg.attempt}")
    for name in ("duration", "wait_before_next"):
        value = getattr(msg, name)
        if value.seconds < 0 or value.nanos < 0:
            raise _invalid(f"{field}.{name}", "must not be negative")
    start_time = _time(msg.start_time, f"{field}.start_time")
    duration_us = _micros(msg.duration, f"{field}.duration")
    wait = _micros(msg.wait_before_next, f"{field}.wait_before_next") if msg.HasField("wait_before_next") else None
    return {
        "attempt": msg.attempt,
        "code": msg.code,
        "status": msg.status,
        "reason": msg.reason,
        "message": msg.message,
        "start_time": start_time.isoformat(),
        "duration_us": duration_us,
        "wait_before_next_us": wait,
    }


def _model_call(mc: run_pb2.ModelCall, field: str) -> dict[str, Any]:
    """A model call as storage.rows writes it (the optional keys only when set: older rows and hashes stay as they
    were), checked in the order proto_convert.model_call_from_pb checks it."""
    problem = share_problem(mc.context_window_used)
    if problem is not None:
        raise _invalid(f"{field}.context_window_used", problem)
    if mc.input_token_limit < 0:
        raise _invalid(f"{field}.input_token_limit", f"must not be negative, got {mc.input_token_limit}")
    payload: dict[str, Any] = {
        "model": mc.model,
        "usage": _usage(mc.usage, f"{field}.usage"),
        "finish_reason": mc.finish_reason,
        "time_to_first_token_us": (
            _micros(mc.time_to_first_token, f"{field}.time_to_first_token")
            if mc.HasField("time_to_first_token")
            else None
        ),
        "text": mc.text,
        "function_call_count": mc.function_call_count,
    }
    if mc.failed_attempts:
        payload["failed_attempts"] = [
            _attempt(attempt, f"{field}.failed_attempts[{i}]") for i, attempt in enumerate(mc.failed_attempts)
        ]
    if mc.thoughts:
        payload["thoughts"] = mc.thoughts
    if mc.input_token_limit:
        payload["input_token_limit"] = mc.input_token_limit
    if mc.context_window_used:
        payload["context_window_used"] = mc.context_window_used
    return payload


def _step_row(msg: run_pb2.ExecutionStep, run_id: str, index: int) -> dict[str, Any]:
    field = f"run.execution_steps[{index}]"
    kind = msg.WhichOneof("payload")
    payload: dict[str, Any]
    if kind == "model_call":
        payload = _model_call(msg.model_call, f"{field}.model_call")
    elif kind == "tool_call":
        tc = msg.tool_call
        if not tc.call_id:
            raise _invalid(f"{field}.tool_call.call_id", "must not be empty")
        payload = {
            "call_id": tc.call_id,
            "tool_name": tc.tool_name,
            "server": tc.server,
            "arguments_json": tc.arguments_json,
        }
        if tc.child_run_id:
            payload["child_run_id"] = tc.child_run_id
    elif kind == "tool_result":
        tr = msg.tool_result
        if not tr.call_id:
            raise _invalid(f"{field}.tool_result.call_id", "must not be empty")
        result_duration = _micros(
            tr.duration, f"{field}.tool_result.duration"
        )  # before the status, as the domain conversion meets them
        status = _TOOL_STATUS.get(tr.status)
        if status is None:
            raise _invalid(f"{field}.tool_result.status", tool_status_problem(tr.status))
        payload = {
            "call_id": tr.call_id,
            "tool_name": tr.tool_name,
            "result_text": tr.result_text,
            "result_json": tr.result_json,
            "is_error": tr.is_error,
            "duration_us": result_duration,
            "status": status,
            "original_size_bytes": tr.original_size_bytes,
            "truncated": tr.truncated,
        }
        if tr.child_run_id:
            payload["child_run_id"] = tr.child_run_id
    elif kind == "final_response":
        payload = {"text": msg.final_response.text}
    elif kind == "error":
        payload = {"reason": msg.error.reason, "message": msg.error.message}
    elif kind == "session_history":
        payload = _session_history(msg.session_history)
    elif kind == "resumed":
        gap = msg.resumed.gap
        if gap.seconds < 0 or gap.nanos < 0:
            raise _invalid(f"{field}.resumed.gap", "must not be negative")
        payload = {
            "gap_us": _micros(gap, f"{field}.resumed.gap"),
            "replica": msg.resumed.replica,
            "previous_replica": msg.resumed.previous_replica,
        }
    else:
        raise _invalid(f"{field}.payload", "must be set (model_call, tool_call, tool_result, ...)")
    if not msg.HasField("time"):
        raise _invalid(f"{field}.time", "must be set")
    duration = msg.duration
    if duration.seconds < 0 or duration.nanos < 0:
        raise _invalid(f"{field}.duration", "must not be negative")
    return {
        "run_id": run_id,
        "sequence": msg.sequence,
        "time": _time(msg.time, f"{field}.time"),
        "duration_us": _micros(duration, f"{field}.duration"),
        "kind": kind,
        "payload": payload,
    }


def _tool_call_row(msg: run_pb2.ToolCall, run_id: str, position: int) -> dict[str, Any]:
    field = f"run.tool_calls[{position}]"
    if not msg.id:
        raise _invalid(f"{field}.id", "must not be empty")
    if not msg.name:
        raise _invalid(f"{field}.name", "must not be empty")
    if not msg.HasField("start_time"):
        raise _invalid(f"{field}.start_time", "must be set")
    # In the order the domain conversion meets them (agentrun_core.proto_convert.tool_call_from_pb).
    duration_us = _micros(msg.duration, f"{field}.duration")
    status = _TOOL_STATUS.get(msg.status)
    if status is None:
        raise _invalid(f"{field}.status", tool_status_problem(msg.status))
    return {
        "run_id": run_id,
        "call_id": msg.id,
        "name": msg.name,
        "server": msg.server,
        "parameters_json": msg.parameters_json,
        "result": msg.result,
        "duration_us": duration_us,
        "status": status,
        "start_time": _time(msg.start_time, f"{field}.start_time"),
        "is_error": msg.is_error,
        "position": position,
    }


def _run_row(msg: run_pb2.Run) -> dict[str, Any]:
    if not msg.HasField("start_time"):
        raise _invalid("run.start_time", "must be set")
    if msg.steps_taken < 0:
        raise _invalid("run.steps_taken", f"must not be negative, got {msg.steps_taken}")
    has_duration = msg.HasField("duration")
    if has_duration and (msg.duration.seconds < 0 or msg.duration.nanos < 0):
        raise _invalid("run.duration", "must not be negative")
    problem = share_problem(msg.max_context_window_used)
    if problem is not None:
        raise _invalid("run.max_context_window_used", problem)
    has_queue_duration = msg.HasField("queue_duration")
    if has_queue_duration and (msg.queue_duration.seconds < 0 or msg.queue_duration.nanos < 0):
        raise _invalid("run.queue_duration", "must not be negative")
    # In the order the domain conversion meets them (agentrun_core.proto_convert.run_from_pb): the status, the
    # times (out of their protobuf range: InvalidArgument naming the field), the token usage, the cost.
    status = _RUN_STATUS.get(msg.status)
    if status is None:
        raise _invalid("run.status", run_status_problem(msg.status))
    start_time = _time(msg.start_time, "run.start_time")
    end_time = _time(msg.end_time, "run.end_time") if msg.HasField("end_time") else None
    duration_us = _micros(msg.duration, "run.duration") if has_duration else None
    queue_duration_us = _micros(msg.queue_duration, "run.queue_duration") if has_queue_duration else None
    usage = _usage(msg.token_usage, "run.token_usage")
    has_error = msg.HasField("error")
    has_cost = msg.HasField("cost")
    cost = msg.cost
    cost_amount = _cost_amount(cost) if has_cost else None
    return {
        "id": msg.id,
        "agent_name": msg.agent_name,
        "agent_version": msg.agent_version,
        "user_name": msg.user,
        "task": msg.task,
        "labels": dict(msg.labels),
        "variables": dict(msg.variables),
        "status": status,
        "error_reason": msg.error.reason if has_error else None,
        "error_message": msg.error.message if has_error else None,
        "final_response": msg.final_response,
        "model_name": msg.model_name,
        "start_time": start_time,
        "end_time": end_time,
        "duration_us": duration_us,
        **usage,
        "cost": cost_amount,
        "cost_currency": (cost.currency_code or "USD") if has_cost else None,
        "price_table_version": cost.price_table_version if has_cost else None,
        "steps_taken": msg.steps_taken,
        "tools_used": list(msg.tools_used),
        "trace_id": msg.trace_id,
        "parent_run_id": msg.parent_run_id,
        "root_run_id": msg.root_run_id,
        "parent_tool_call_id": msg.parent_tool_call_id,
        "depth": msg.depth,
        "session_id": msg.session_id,
        "forked_from_run_id": msg.forked_from.run_id if msg.HasField("forked_from") else None,
        "forked_from_sequence": msg.forked_from.sequence if msg.HasField("forked_from") else None,
        "max_context_window_used": msg.max_context_window_used,
        "queue_duration_us": queue_duration_us,
    }


def _check_steps_belong(msg: run_pb2.Run) -> None:
    """What the rows do not keep: each step's run id (empty or the run's) and depth (0 in a stored run)."""
    run_id = msg.id
    for index, step in enumerate(msg.execution_steps):
        if step.run_id and step.run_id != run_id:
            raise InvalidArgument(
                f"run.execution_steps[{index}].run_id",
                f"must be empty or the run's id {shown(run_id)}, got {shown(step.run_id)}",
            )
        composition.check_step_depth(f"run.execution_steps[{index}]", step.depth)


def rows_from_pb(msg: run_pb2.Run) -> RunRows:
    """The rows storing `msg` (with its record hash): raises InvalidArgument naming the field for the first problem
    the domain conversion (agentrun_core.proto_convert.run_from_pb) would meet. With validate_rows after it, a
    record is refused exactly as validate_run(run_from_pb(msg)) refuses it."""
    try:
        run_row = _run_row(msg)
        run_id = run_row["id"]
        steps = [_step_row(step, run_id, index) for index, step in enumerate(msg.execution_steps)]
        calls = [_tool_call_row(call, run_id, position) for position, call in enumerate(msg.tool_calls)]
        run_row["max_context_window_used"] = max_context_window_used(steps, run_row["max_context_window_used"])
        run_row["totals_with_descendants"] = _totals_with_descendants(msg)
    except OverflowError:
        # Arithmetic on values in range that still overflows (none known: the Timestamp and Duration checks keep
        # every value within datetime's range): bad input, not a server fault.
        raise InvalidArgument("run", "holds a timestamp or duration out of range (years 1-9999)") from None
    problem = run_id_problem(run_id)
    if problem is not None:
        raise InvalidArgument("run.id", problem)
    _check_steps_belong(msg)
    canonical = canonical_record(run_row, steps, calls)
    if b"\\u0000" in canonical:
        # orjson writes NUL as \u0000: only then convert and walk the run to name the field (rare).
        try:
            check_no_nul(run_from_pb(msg))
        except ConversionError as exc:  # unreachable after the checks above; named like RecordRun would
            raise InvalidArgument(exc.field, exc.problem) from None
    digest = hashlib.sha256(canonical).hexdigest()
    run_row["record_hash"] = digest
    # Derived from the tool calls (already in the hash): the BASIC view's count of them.
    run_row["tool_call_count"] = len(calls)
    return RunRows(run=run_row, steps=steps, tool_calls=calls, record_hash=digest)
