"""Conversion between domain values (agentrun_core.domain) and rows of runs_service.storage.tables.

Times go in as UTC-aware datetimes and come back UTC-aware (SQLite hands back naive datetimes: UTC is re-attached).
Durations are integer microseconds. A step's payload is stored as a JSON object that round-trips to the payload
dataclass exactly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, assert_never

import orjson

from agentrun_core.domain import (
    Cost,
    ExecutionStep,
    FinalResponse,
    ForkOrigin,
    ModelAttempt,
    ModelCall,
    Run,
    RunError,
    RunResumed,
    RunStatus,
    SessionHistory,
    SessionTurn,
    StepKind,
    StepPayload,
    TokenUsage,
    ToolCallFinished,
    ToolCallRecord,
    ToolCallStarted,
    ToolCallStatus,
    step_kind,
)
from runs_service.validation import check_no_nul

_MICROSECOND = timedelta(microseconds=1)


class CorruptRow(ValueError):
    """A stored row cannot be turned back into a domain value."""


@dataclass(frozen=True, slots=True)
class RunRows:
    """One run as the rows to write. `run` lacks recorded_at/updated_at; `record_hash` is set."""

    run: dict[str, Any]
    steps: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    record_hash: str


# --- scalars ---------------------------------------------------------------------------------------------


def to_utc(value: datetime) -> datetime:
    """`value` as a UTC-aware datetime; naive values (as SQLite returns them) are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    if value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def micros(value: timedelta) -> int:
    return value // _MICROSECOND


def from_micros(value: int) -> timedelta:
    return timedelta(microseconds=value)


def _usage_to_json(usage: TokenUsage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens,
        "thinking_tokens": usage.thinking_tokens,
        "tool_use_prompt_tokens": usage.tool_use_prompt_tokens,
    }


def _usage_from_json(value: Mapping[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=int(value.get("input_tokens", 0)),
        output_tokens=int(value.get("output_tokens", 0)),
        total_tokens=int(value.get("total_tokens", 0)),
        cached_tokens=int(value.get("cached_tokens", 0)),
        thinking_tokens=int(value.get("thinking_tokens", 0)),
        tool_use_prompt_tokens=int(value.get("tool_use_prompt_tokens", 0)),
    )


def _cost_to_json(cost: Cost) -> dict[str, str]:
    return {
        "amount": format(cost.amount, "f"),
        "currency_code": cost.currency_code,
        "price_table_version": cost.price_table_version,
    }


def _cost_from_json(value: Mapping[str, Any]) -> Cost:
    return Cost(
        amount=Decimal(str(value["amount"])),
        currency_code=value.get("currency_code", ""),
        price_table_version=value.get("price_table_version", ""),
    )


def _with_descendants_to_json(run: Run) -> dict[str, Any] | None:
    """The runs.totals_with_descendants value of `run` (None when it has neither total)."""
    totals: dict[str, Any] = {}
    if run.token_usage_with_descendants is not None:
        totals["token_usage"] = _usage_to_json(run.token_usage_with_descendants)
    if run.cost_with_descendants is not None:
        totals["cost"] = _cost_to_json(run.cost_with_descendants)
    return totals or None


def _attempt_to_json(attempt: ModelAttempt) -> dict[str, Any]:
    wait = attempt.wait_before_next
    return {
        "attempt": attempt.attempt,
        "code": attempt.code,
        "status": attempt.status,
        "reason": attempt.reason,
        "message": attempt.message,
        "start_time": to_utc(attempt.start_time).isoformat(),
        "duration_us": micros(attempt.duration),
        "wait_before_next_us": None if wait is None else micros(wait),
    }


def _attempt_from_json(value: Mapping[str, Any]) -> ModelAttempt:
    wait = value.get("wait_before_next_us")
    return ModelAttempt(
        attempt=int(value.get("attempt", 1)),
        code=int(value.get("code", 0)),
        status=value.get("status", ""),
        reason=value.get("reason", ""),
        message=value.get("message", ""),
        start_time=to_utc(datetime.fromisoformat(value["start_time"])),
        duration=from_micros(int(value.get("duration_us", 0))),
        wait_before_next=None if wait is None else from_micros(int(wait)),
    )


def _model_call_to_json(payload: ModelCall) -> dict[str, Any]:
    ttft = payload.time_to_first_token
    out: dict[str, Any] = {
        "model": payload.model,
        "usage": _usage_to_json(payload.usage),
        "finish_reason": payload.finish_reason,
        "time_to_first_token_us": None if ttft is None else micros(ttft),
        "text": payload.text,
        "function_call_count": payload.function_call_count,
    }
    # Written only when set: the rows (and record hashes) of model calls that have none stay as they were.
    if payload.failed_attempts:
        out["failed_attempts"] = [_attempt_to_json(a) for a in payload.failed_attempts]
    if payload.thoughts:
        out["thoughts"] = payload.thoughts
    if payload.input_token_limit:
        out["input_token_limit"] = payload.input_token_limit
    if payload.context_window_used:
        out["context_window_used"] = payload.context_window_used
    return out


def _model_call_from_json(value: Mapping[str, Any]) -> ModelCall:
    ttft = value.get("time_to_first_token_us")
    return ModelCall(
        model=value.get("model", ""),
        usage=_usage_from_json(value.get("usage") or {}),
        finish_reason=value.get("finish_reason", ""),
        time_to_first_token=None if ttft is None else from_micros(int(ttft)),
        text=value.get("text", ""),
        function_call_count=int(value.get("function_call_count", 0)),
        failed_attempts=tuple(_attempt_from_json(a) for a in value.get("failed_attempts") or ()),
        thoughts=value.get("thoughts", ""),
        input_token_limit=int(value.get("input_token_limit", 0)),
        context_window_used=float(value.get("context_window_used", 0.0)),
    )


# --- step payloads ---------------------------------------------------------------------------------------


def _with_child(payload: dict[str, Any], child_run_id: str) -> dict[str, Any]:
    """A tool step's JSON with its child run id, which is left out when empty (the usual case)."""
    if child_run_id:
        payload["child_run_id"] = child_run_id
    return payload


def _session_history_to_json(payload: SessionHistory) -> dict[str, Any]:
    first = payload.first_turn
    return {
        "session_id": payload.session_id,
        "run_ids": list(payload.run_ids),
        "turn_count": payload.turn_count,
        "first_turn": None if first is None else {"run_id": first.run_id, "sequence": first.sequence},
        "dropped_turn_count": payload.dropped_turn_count,
        "dropped_run_ids": list(payload.dropped_run_ids),
        "token_limit": payload.token_limit,
        "token_count": payload.token_count,
    }


def _session_history_from_json(value: Mapping[str, Any]) -> SessionHistory:
    first = value.get("first_turn")
    return SessionHistory(
        session_id=value.get("session_id", ""),
        run_ids=tuple(value.get("run_ids") or ()),
        turn_count=int(value.get("turn_count", 0)),
        first_turn=None if first is None else SessionTurn(run_id=first["run_id"], sequence=int(first["sequence"])),
        dropped_turn_count=int(value.get("dropped_turn_count", 0)),
        dropped_run_ids=tuple(value.get("dropped_run_ids") or ()),
        token_limit=int(value.get("token_limit", 0)),
        token_count=int(value.get("token_count", 0)),
    )


def payload_to_json(payload: StepPayload) -> dict[str, Any]:
    """The payload as a JSON object (only str/int/bool/None/dict values)."""
    match payload:
        case ModelCall():
            return _model_call_to_json(payload)
        case ToolCallStarted():
            started = {
                "call_id": payload.call_id,
                "tool_name": payload.tool_name,
                "server": payload.server,
                "arguments_json": payload.arguments_json,
            }
            return _with_child(started, payload.child_run_id)
        case ToolCallFinished():
            finished = {
                "call_id": payload.call_id,
                "tool_name": payload.tool_name,
                "result_text": payload.result_text,
                "result_json": payload.result_json,
                "is_error": payload.is_error,
                "duration_us": micros(payload.duration),
                "status": payload.status.value,
                "original_size_bytes": payload.original_size_bytes,
                "truncated": payload.truncated,
            }
            return _with_child(finished, payload.child_run_id)
        case FinalResponse():
            return {"text": payload.text}
        case RunError():
            return {"reason": payload.reason, "message": payload.message}
        case SessionHistory():
            return _session_history_to_json(payload)
        case RunResumed():
            return {
                "gap_us": micros(payload.gap),
                "replica": payload.replica,
                "previous_replica": payload.previous_replica,
            }
        case _:
            assert_never(payload)


def payload_from_json(kind: str, value: Mapping[str, Any]) -> StepPayload:
    """The payload dataclass stored as `value` for a step of `kind` (a StepKind value)."""
    try:
        step = StepKind(kind)
    except ValueError:
        raise CorruptRow(f"unknown step kind {kind!r}") from None
    match step:
        case StepKind.MODEL_CALL:
            return _model_call_from_json(value)
        case StepKind.TOOL_CALL:
            return ToolCallStarted(
                call_id=value["call_id"],
                tool_name=value.get("tool_name", ""),
                server=value.get("server", ""),
                arguments_json=value.get("arguments_json", "{}"),
                child_run_id=value.get("child_run_id", ""),
            )
        case StepKind.TOOL_RESULT:
            return ToolCallFinished(
                call_id=value["call_id"],
                tool_name=value.get("tool_name", ""),
                result_text=value.get("result_text", ""),
                result_json=value.get("result_json", ""),
                is_error=bool(value.get("is_error", False)),
                duration=from_micros(int(value.get("duration_us", 0))),
                status=ToolCallStatus(value.get("status", ToolCallStatus.SUCCEEDED.value)),
                original_size_bytes=int(value.get("original_size_bytes", 0)),
                truncated=bool(value.get("truncated", False)),
                child_run_id=value.get("child_run_id", ""),
            )
        case StepKind.FINAL_RESPONSE:
            return FinalResponse(text=value.get("text", ""))
        case StepKind.ERROR:
            return RunError(reason=value.get("reason", ""), message=value.get("message", ""))
        case StepKind.SESSION_HISTORY:
            return _session_history_from_json(value)
        case StepKind.RESUMED:
            return RunResumed(
                gap=from_micros(int(value.get("gap_us", 0))),
                replica=value.get("replica", ""),
                previous_replica=value.get("previous_replica", ""),
            )
        case _:
            assert_never(step)


# --- domain -> rows --------------------------------------------------------------------------------------


def _hash_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot hash a {type(value).__name__}")


def canonical_record(run_row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], tools: Sequence[Any]) -> bytes:
    """The canonical form of a run's rows (keys sorted, times UTC, Decimals as text)."""
    return orjson.dumps([run_row, steps, tools], option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z, default=_hash_default)


def record_hash(run_row: Mapping[str, Any], steps: Sequence[Mapping[str, Any]], tools: Sequence[Any]) -> str:
    """sha256 (hex) of the canonical form of a run's rows."""
    return hashlib.sha256(canonical_record(run_row, steps, tools)).hexdigest()


def max_context_window_used(steps: Sequence[Mapping[str, Any]], recorded: float) -> float:
    """What runs.max_context_window_used stores: the largest context_window_used of the run's model-call steps,
    computed here whatever the record said; the record's own value only when it carries no steps at all."""
    if not steps:
        return recorded
    return max(
        (float(step["payload"].get("context_window_used", 0.0)) for step in steps if step["kind"] == "model_call"),
        default=0.0,
    )


def run_to_rows(run: Run) -> RunRows:
    """The rows that store `run`. Steps get the run's id (a step's empty run_id is filled in)."""
    cost = run.cost
    error = run.error
    usage = run.token_usage
    run_row: dict[str, Any] = {
        "id": run.id,
        "agent_name": run.agent_name,
        "agent_version": run.agent_version,
        "user_name": run.user,
        "task": run.task,
        "labels": dict(run.labels),
        "variables": dict(run.variables),
        "status": run.status.value,
        "error_reason": None if error is None else error.reason,
        "error_message": None if error is None else error.message,
        "final_response": run.final_response,
        "model_name": run.model_name,
        "start_time": to_utc(run.start_time),
        "end_time": None if run.end_time is None else to_utc(run.end_time),
        "duration_us": None if run.duration is None else micros(run.duration),
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "cached_tokens": usage.cached_tokens,
        "thinking_tokens": usage.thinking_tokens,
        "tool_use_prompt_tokens": usage.tool_use_prompt_tokens,
        "cost": None if cost is None else cost.amount,
        "cost_currency": None if cost is None else cost.currency_code,
        "price_table_version": None if cost is None else cost.price_table_version,
        "steps_taken": run.steps_taken,
        "tools_used": list(run.tools_used),
        "trace_id": run.trace_id,
        "parent_run_id": run.parent_run_id,
        "root_run_id": run.root_run_id,
        "parent_tool_call_id": run.parent_tool_call_id,
        "depth": run.depth,
        "session_id": run.session_id,
        "forked_from_run_id": None if run.forked_from is None else run.forked_from.run_id,
        "forked_from_sequence": None if run.forked_from is None else run.forked_from.sequence,
        "totals_with_descendants": _with_descendants_to_json(run),
        "max_context_window_used": run.max_context_window_used,
        "queue_duration_us": None if run.queue_duration is None else micros(run.queue_duration),
    }
    run_id = run.id
    step_rows = [
        {
            "run_id": run_id,
            "sequence": step.sequence,
            "time": to_utc(step.time),
            "duration_us": micros(step.duration),
            "kind": step_kind(step.payload).value,
            "payload": payload_to_json(step.payload),
        }
        for step in run.execution_steps
    ]
    run_row["max_context_window_used"] = max_context_window_used(step_rows, run.max_context_window_used)
    tool_rows = [
        {
            "run_id": run_id,
            "call_id": call.id,
            "name": call.name,
            "server": call.server,
            "parameters_json": call.parameters_json,
            "result": call.result,
            "duration_us": micros(call.duration),
            "status": call.status.value,
            "start_time": to_utc(call.start_time),
            "is_error": call.is_error,
            "position": position,
        }
        for position, call in enumerate(run.tool_calls)
    ]
    canonical = canonical_record(run_row, step_rows, tool_rows)
    if b"\\u0000" in canonical:
        # orjson writes NUL as \u0000: only then walk the run to name the field (the text "\u0000" also matches).
        check_no_nul(run)
    digest = hashlib.sha256(canonical).hexdigest()
    run_row["record_hash"] = digest
    # Derived from the tool calls (already in the hash): the BASIC view's count of them.
    run_row["tool_call_count"] = len(tool_rows)
    return RunRows(run=run_row, steps=step_rows, tool_calls=tool_rows, record_hash=digest)


# --- rows -> domain --------------------------------------------------------------------------------------


def step_from_row(row: Mapping[Any, Any]) -> ExecutionStep:
    payload = row["payload"]
    if isinstance(payload, str | bytes):  # a JSON column read without the JSON type (raw SQL)
        payload = orjson.loads(payload)
    return ExecutionStep(
        run_id=row["run_id"],
        sequence=row["sequence"],
        time=to_utc(row["time"]),
        duration=from_micros(row["duration_us"]),
        payload=payload_from_json(row["kind"], payload),
    )


def tool_call_from_row(row: Mapping[Any, Any]) -> ToolCallRecord:
    return ToolCallRecord(
        id=row["call_id"],
        name=row["name"],
        server=row["server"],
        parameters_json=row["parameters_json"],
        result=row["result"],
        duration=from_micros(row["duration_us"]),
        status=ToolCallStatus(row["status"]),
        start_time=to_utc(row["start_time"]),
        is_error=bool(row["is_error"]),
    )


def run_from_row(
    row: Mapping[Any, Any],
    steps: Sequence[ExecutionStep] = (),
    tool_calls: Sequence[ToolCallRecord] = (),
) -> Run:
    """The run stored in `row` (a runs row as a mapping), with the given steps and tool calls (FULL view)."""
    error_reason = row["error_reason"]
    cost_amount = row["cost"]
    totals = row["totals_with_descendants"] or {}
    usage_with_descendants = totals.get("token_usage")
    cost_with_descendants = totals.get("cost")
    forked_from_run_id = row["forked_from_run_id"]
    duration_us = row["duration_us"]
    queue_duration_us = row["queue_duration_us"]
    end_time = row["end_time"]
    return Run(
        id=row["id"],
        agent_name=row["agent_name"],
        status=RunStatus(row["status"]),
        start_time=to_utc(row["start_time"]),
        agent_version=row["agent_version"],
        user=row["user_name"],
        task=row["task"],
        labels=dict(row["labels"] or {}),
        variables=dict(row["variables"] or {}),
        error=None if error_reason is None else RunError(reason=error_reason, message=row["error_message"] or ""),
        final_response=row["final_response"],
        model_name=row["model_name"],
        end_time=None if end_time is None else to_utc(end_time),
        duration=None if duration_us is None else from_micros(duration_us),
        token_usage=TokenUsage(
            input_tokens=row["input_tokens"],
            output_tokens=row["output_tokens"],
            total_tokens=row["total_tokens"],
            cached_tokens=row["cached_tokens"],
            thinking_tokens=row["thinking_tokens"],
            tool_use_prompt_tokens=row["tool_use_prompt_tokens"],
        ),
        cost=None
        if cost_amount is None
        else Cost(
            amount=Decimal(cost_amount) if not isinstance(cost_amount, Decimal) else cost_amount,
            currency_code=row["cost_currency"] or "",
            price_table_version=row["price_table_version"] or "",
        ),
        steps_taken=row["steps_taken"],
        tools_used=tuple(row["tools_used"] or ()),
        trace_id=row["trace_id"],
        execution_steps=tuple(steps),
        tool_calls=tuple(tool_calls),
        parent_run_id=row["parent_run_id"],
        root_run_id=row["root_run_id"],
        parent_tool_call_id=row["parent_tool_call_id"],
        depth=row["depth"],
        session_id=row["session_id"],
        forked_from=None
        if forked_from_run_id is None
        else ForkOrigin(run_id=forked_from_run_id, sequence=row["forked_from_sequence"] or 0),
        token_usage_with_descendants=None
        if usage_with_descendants is None
        else _usage_from_json(usage_with_descendants),
        cost_with_descendants=None if cost_with_descendants is None else _cost_from_json(cost_with_descendants),
        max_context_window_used=float(row["max_context_window_used"] or 0.0),
        queue_duration=None if queue_duration_us is None else from_micros(queue_duration_us),
        # The count stands for the tool calls only when they are left out (the BASIC view); see Run.
        tool_call_count=0 if tool_calls else int(row["tool_call_count"] or 0),
    )
