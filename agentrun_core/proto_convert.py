"""Translation between the domain model (agentrun_core.domain) and the agentrun.runs.v1 messages.

The only module of agentrun_core that imports generated code; servicers and gRPC clients use it so that domain
code never sees protobuf.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import assert_never

from agentrun.runs.v1 import run_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from agentrun_core import domain as d
from agentrun_core.echo import shown

_RUN_STATUS_TO_PB = {
    d.RunStatus.RUNNING: run_pb2.RUN_STATUS_RUNNING,
    d.RunStatus.COMPLETED: run_pb2.RUN_STATUS_COMPLETED,
    d.RunStatus.FAILED: run_pb2.RUN_STATUS_FAILED,
    d.RunStatus.CANCELLED: run_pb2.RUN_STATUS_CANCELLED,
    d.RunStatus.TIMED_OUT: run_pb2.RUN_STATUS_TIMED_OUT,
    d.RunStatus.INTERRUPTED: run_pb2.RUN_STATUS_INTERRUPTED,
    d.RunStatus.QUEUED: run_pb2.RUN_STATUS_QUEUED,
}
_RUN_STATUS_FROM_PB = {v: k for k, v in _RUN_STATUS_TO_PB.items()}

_TOOL_STATUS_TO_PB = {
    d.ToolCallStatus.RUNNING: run_pb2.TOOL_CALL_STATUS_RUNNING,
    d.ToolCallStatus.SUCCEEDED: run_pb2.TOOL_CALL_STATUS_SUCCEEDED,
    d.ToolCallStatus.FAILED: run_pb2.TOOL_CALL_STATUS_FAILED,
    d.ToolCallStatus.TIMED_OUT: run_pb2.TOOL_CALL_STATUS_TIMED_OUT,
    d.ToolCallStatus.CANCELLED: run_pb2.TOOL_CALL_STATUS_CANCELLED,
}
_TOOL_STATUS_FROM_PB = {v: k for k, v in _TOOL_STATUS_TO_PB.items()}


class ConversionError(ValueError):
    """A message cannot be turned into a domain value. `field` names the offending field path."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# --- scalars -------------------------------------------------------------------------------------------------


def timestamp_to_pb(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


# google.protobuf.Timestamp's range (0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z) and Duration's (about
# 10,000 years either way); nanos are 0..999,999,999 (a Duration's take the sign of its seconds).
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
MAX_DURATION_SECONDS = 315_576_000_000
MAX_NANOS = 999_999_999


def timestamp_problem(value: timestamp_pb2.Timestamp) -> str | None:
    """Why `value` is not a valid Timestamp, or None."""
    if not 0 <= value.nanos <= MAX_NANOS:
        return f"nanos must be 0 to {MAX_NANOS}, got {value.nanos}"
    if not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS:
        return (
            "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, got "
            f"{value.seconds} seconds since 1970-01-01"
        )
    return None


def duration_problem(value: duration_pb2.Duration) -> str | None:
    """Why `value` is not a valid Duration, or None."""
    if not -MAX_NANOS <= value.nanos <= MAX_NANOS:
        return f"nanos must be -{MAX_NANOS} to {MAX_NANOS}, got {value.nanos}"
    if not -MAX_DURATION_SECONDS <= value.seconds <= MAX_DURATION_SECONDS:
        return f"must be at most {MAX_DURATION_SECONDS} seconds (10,000 years) either way, got {value.seconds}"
    if (value.seconds < 0 < value.nanos) or (value.nanos < 0 < value.seconds):
        return f"seconds ({value.seconds}) and nanos ({value.nanos}) must have the same sign"
    return None


def timestamp_from_pb(value: timestamp_pb2.Timestamp, field: str = "time") -> datetime:
    """The time (microseconds, nanos floored); raises ConversionError(field) for a Timestamp out of its range."""
    problem = timestamp_problem(value)
    if problem is not None:
        raise ConversionError(field, problem)
    micros = value.seconds * 1_000_000 + value.nanos // 1000
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def duration_to_pb(value: timedelta) -> duration_pb2.Duration:
    dur = duration_pb2.Duration()
    dur.FromTimedelta(value)
    return dur


def duration_from_pb(value: duration_pb2.Duration, field: str = "duration") -> timedelta:
    """The span (microseconds, nanos floored); raises ConversionError(field) for a Duration out of its range."""
    problem = duration_problem(value)
    if problem is not None:
        raise ConversionError(field, problem)
    return timedelta(microseconds=value.seconds * 1_000_000 + value.nanos // 1000)


def run_status_to_pb(value: d.RunStatus) -> run_pb2.RunStatus:
    return _RUN_STATUS_TO_PB[value]


def run_status_problem(value: int) -> str:
    """Why `value` is not a RunStatus a run can be recorded with (unset, or a number this server does not know)."""
    return _enum_problem(run_pb2.RunStatus, value)


def tool_status_problem(value: int) -> str:
    return _enum_problem(run_pb2.ToolCallStatus, value)


def _enum_problem(enum: EnumTypeWrapper, value: int) -> str:
    unspecified, *known = enum.keys()
    if value == 0:
        return f"must be set to a {enum.DESCRIPTOR.name} other than {unspecified}"
    return f"unknown {enum.DESCRIPTOR.name} value {value}; use one of {', '.join(known)}"


def run_status_from_pb(value: int, field: str = "status") -> d.RunStatus:
    try:
        return _RUN_STATUS_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise ConversionError(field, run_status_problem(value)) from None


def tool_status_from_pb(value: int, field: str) -> d.ToolCallStatus:
    try:
        return _TOOL_STATUS_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise ConversionError(field, tool_status_problem(value)) from None


def token_usage_to_pb(value: d.TokenUsage) -> run_pb2.TokenUsage:
    return run_pb2.TokenUsage(**value.counts())


def token_counts_from_pb(value: run_pb2.TokenUsage, field: str = "token_usage") -> dict[str, int]:
    """The counts of a TokenUsage message by name (TokenUsage's fields), checked: ConversionError naming the first
    negative one (the one rule for every path that reads usage)."""
    counts = {
        "input_tokens": value.input_tokens,
        "output_tokens": value.output_tokens,
        "total_tokens": value.total_tokens,
        "cached_tokens": value.cached_tokens,
        "thinking_tokens": value.thinking_tokens,
        "tool_use_prompt_tokens": value.tool_use_prompt_tokens,
    }
    for name, count in counts.items():
        if count < 0:
            raise ConversionError(f"{field}.{name}", f"must not be negative, got {count}")
    return counts


def token_usage_from_pb(value: run_pb2.TokenUsage, field: str = "token_usage") -> d.TokenUsage:
    return d.TokenUsage(**token_counts_from_pb(value, field))


COST_DECIMAL_PLACES = 10
_MAX_COST = Decimal(10) ** 10
_COST_QUANTUM = Decimal(1).scaleb(-COST_DECIMAL_PLACES)


def decimal_text(value: Decimal) -> str:
    """Canonical text of a decimal: no exponent, no trailing zeros ("0.00150" -> "0.0015", "10" -> "10")."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def cost_to_pb(value: d.Cost) -> run_pb2.Cost:
    return run_pb2.Cost(
        amount=decimal_text(value.amount),
        currency_code=value.currency_code,
        price_table_version=value.price_table_version,
    )


def cost_amount_from_pb(value: run_pb2.Cost, field: str = "cost") -> Decimal:
    """The amount of a Cost message, checked (the one rule for every path that reads one): a finite, non-negative
    decimal below 10^10 with at most COST_DECIMAL_PLACES places; ConversionError naming `field`.amount otherwise."""
    try:
        amount = Decimal(value.amount)
    except InvalidOperation:
        raise ConversionError(f"{field}.amount", f"must be a decimal number, got {shown(value.amount)}") from None
    if not amount.is_finite() or amount < 0:
        raise ConversionError(f"{field}.amount", f"must be a finite, non-negative decimal, got {shown(value.amount)}")
    if amount >= _MAX_COST or amount != amount.quantize(_COST_QUANTUM):
        raise ConversionError(
            f"{field}.amount",
            f"must be below 10000000000 with at most {COST_DECIMAL_PLACES} decimal places, got {shown(value.amount)}",
        )
    return amount


def cost_from_pb(value: run_pb2.Cost, field: str = "cost") -> d.Cost:
    return d.Cost(
        amount=cost_amount_from_pb(value, field),
        currency_code=value.currency_code or "USD",
        price_table_version=value.price_table_version,
    )


def run_error_to_pb(value: d.RunError) -> run_pb2.RunError:
    return run_pb2.RunError(reason=value.reason, message=value.message)


def session_history_to_pb(value: d.SessionHistory) -> run_pb2.SessionHistory:
    msg = run_pb2.SessionHistory(
        session_id=value.session_id,
        run_ids=list(value.run_ids),
        turn_count=value.turn_count,
        dropped_turn_count=value.dropped_turn_count,
        dropped_run_ids=list(value.dropped_run_ids),
        token_limit=value.token_limit,
        token_count=value.token_count,
    )
    if value.first_turn is not None:
        msg.first_turn.CopyFrom(run_pb2.SessionTurn(run_id=value.first_turn.run_id, sequence=value.first_turn.sequence))
    return msg


def session_history_from_pb(msg: run_pb2.SessionHistory) -> d.SessionHistory:
    first = msg.first_turn
    return d.SessionHistory(
        session_id=msg.session_id,
        run_ids=tuple(msg.run_ids),
        turn_count=msg.turn_count,
        first_turn=d.SessionTurn(run_id=first.run_id, sequence=first.sequence) if msg.HasField("first_turn") else None,
        dropped_turn_count=msg.dropped_turn_count,
        dropped_run_ids=tuple(msg.dropped_run_ids),
        token_limit=msg.token_limit,
        token_count=msg.token_count,
    )


def share_problem(value: float) -> str | None:
    """Why `value` is not a share (0..1), or None when it is."""
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return f"must be between 0 and 1, got {value!r}"
    return None


# --- steps ---------------------------------------------------------------------------------------------------


def model_attempt_to_pb(value: d.ModelAttempt) -> run_pb2.ModelAttempt:
    msg = run_pb2.ModelAttempt(
        attempt=value.attempt,
        code=value.code,
        status=value.status,
        reason=value.reason,
        message=value.message,
        start_time=timestamp_to_pb(value.start_time),
        duration=duration_to_pb(value.duration),
    )
    if value.wait_before_next is not None:
        msg.wait_before_next.CopyFrom(duration_to_pb(value.wait_before_next))
    return msg


def model_attempt_from_pb(msg: run_pb2.ModelAttempt, field: str) -> d.ModelAttempt:
    if msg.attempt < 1:
        raise ConversionError(f"{field}.attempt", f"must be at least 1, got {msg.attempt}")
    for name in ("duration", "wait_before_next"):
        value = getattr(msg, name)
        if value.seconds < 0 or value.nanos < 0:
            raise ConversionError(f"{field}.{name}", "must not be negative")
    return d.ModelAttempt(
        attempt=msg.attempt,
        reason=msg.reason,
        message=msg.message,
        start_time=timestamp_from_pb(msg.start_time, f"{field}.start_time"),
        duration=duration_from_pb(msg.duration, f"{field}.duration"),
        code=msg.code,
        status=msg.status,
        wait_before_next=(
            duration_from_pb(msg.wait_before_next, f"{field}.wait_before_next")
            if msg.HasField("wait_before_next")
            else None
        ),
    )


def model_call_to_pb(payload: d.ModelCall) -> run_pb2.ModelCall:
    mc = run_pb2.ModelCall(
        model=payload.model,
        usage=token_usage_to_pb(payload.usage),
        finish_reason=payload.finish_reason,
        text=payload.text,
        function_call_count=payload.function_call_count,
        thoughts=payload.thoughts,
        input_token_limit=payload.input_token_limit,
        context_window_used=payload.context_window_used,
    )
    if payload.failed_attempts:
        mc.failed_attempts.extend(model_attempt_to_pb(a) for a in payload.failed_attempts)
    if payload.time_to_first_token is not None:
        mc.time_to_first_token.CopyFrom(duration_to_pb(payload.time_to_first_token))
    return mc


def model_call_from_pb(mc: run_pb2.ModelCall, field: str) -> d.ModelCall:
    problem = share_problem(mc.context_window_used)
    if problem is not None:
        raise ConversionError(f"{field}.context_window_used", problem)
    if mc.input_token_limit < 0:
        raise ConversionError(f"{field}.input_token_limit", f"must not be negative, got {mc.input_token_limit}")
    return d.ModelCall(
        model=mc.model,
        usage=token_usage_from_pb(mc.usage, f"{field}.usage"),
        finish_reason=mc.finish_reason,
        time_to_first_token=(
            duration_from_pb(mc.time_to_first_token, f"{field}.time_to_first_token")
            if mc.HasField("time_to_first_token")
            else None
        ),
        text=mc.text,
        function_call_count=mc.function_call_count,
        failed_attempts=tuple(
            model_attempt_from_pb(a, f"{field}.failed_attempts[{i}]") for i, a in enumerate(mc.failed_attempts)
        ),
        thoughts=mc.thoughts,
        input_token_limit=mc.input_token_limit,
        context_window_used=mc.context_window_used,
    )


def step_to_pb(step: d.ExecutionStep) -> run_pb2.ExecutionStep:
    msg = run_pb2.ExecutionStep(
        run_id=step.run_id,
        sequence=step.sequence,
        time=timestamp_to_pb(step.time),
        duration=duration_to_pb(step.duration),
        depth=step.depth,
    )
    payload = step.payload
    match payload:
        case d.ModelCall():
            msg.model_call.CopyFrom(model_call_to_pb(payload))
        case d.ToolCallStarted():
            msg.tool_call.CopyFrom(
                run_pb2.ToolCallStarted(
                    call_id=payload.call_id,
                    tool_name=payload.tool_name,
                    server=payload.server,
                    arguments_json=payload.arguments_json,
                    child_run_id=payload.child_run_id,
                )
            )
        case d.ToolCallFinished():
            msg.tool_result.CopyFrom(
                run_pb2.ToolCallFinished(
                    call_id=payload.call_id,
                    tool_name=payload.tool_name,
                    result_text=payload.result_text,
                    result_json=payload.result_json,
                    is_error=payload.is_error,
                    duration=duration_to_pb(payload.duration),
                    status=_TOOL_STATUS_TO_PB[payload.status],
                    original_size_bytes=payload.original_size_bytes,
                    truncated=payload.truncated,
                    child_run_id=payload.child_run_id,
                )
            )
        case d.FinalResponse():
            msg.final_response.CopyFrom(run_pb2.FinalResponse(text=payload.text))
        case d.RunError():
            msg.error.CopyFrom(run_error_to_pb(payload))
        case d.SessionHistory():
            msg.session_history.CopyFrom(session_history_to_pb(payload))
        case d.RunResumed():
            msg.resumed.CopyFrom(
                run_pb2.RunResumed(
                    gap=duration_to_pb(payload.gap), replica=payload.replica, previous_replica=payload.previous_replica
                )
            )
        case _:
            assert_never(payload)
    return msg


def step_from_pb(msg: run_pb2.ExecutionStep, field: str = "step") -> d.ExecutionStep:
    kind = msg.WhichOneof("payload")
    payload: d.StepPayload
    if kind == "model_call":
        payload = model_call_from_pb(msg.model_call, f"{field}.model_call")
    elif kind == "tool_call":
        tc = msg.tool_call
        if not tc.call_id:
            raise ConversionError(f"{field}.tool_call.call_id", "must not be empty")
        payload = d.ToolCallStarted(
            call_id=tc.call_id,
            tool_name=tc.tool_name,
            server=tc.server,
            arguments_json=tc.arguments_json,
            child_run_id=tc.child_run_id,
        )
    elif kind == "tool_result":
        tr = msg.tool_result
        if not tr.call_id:
            raise ConversionError(f"{field}.tool_result.call_id", "must not be empty")
        payload = d.ToolCallFinished(
            call_id=tr.call_id,
            tool_name=tr.tool_name,
            result_text=tr.result_text,
            result_json=tr.result_json,
            is_error=tr.is_error,
            duration=duration_from_pb(tr.duration, f"{field}.tool_result.duration"),
            status=tool_status_from_pb(tr.status, f"{field}.tool_result.status"),
            original_size_bytes=tr.original_size_bytes,
            truncated=tr.truncated,
            child_run_id=tr.child_run_id,
        )
    elif kind == "final_response":
        payload = d.FinalResponse(text=msg.final_response.text)
    elif kind == "error":
        payload = d.RunError(reason=msg.error.reason, message=msg.error.message)
    elif kind == "session_history":
        payload = session_history_from_pb(msg.session_history)
    elif kind == "resumed":
        resumed = msg.resumed
        if resumed.gap.seconds < 0 or resumed.gap.nanos < 0:
            raise ConversionError(f"{field}.resumed.gap", "must not be negative")
        payload = d.RunResumed(
            gap=duration_from_pb(resumed.gap, f"{field}.resumed.gap"),
            replica=resumed.replica,
            previous_replica=resumed.previous_replica,
        )
    else:
        raise ConversionError(f"{field}.payload", "must be set (model_call, tool_call, tool_result, ...)")
    if not msg.HasField("time"):
        raise ConversionError(f"{field}.time", "must be set")
    if msg.duration.seconds < 0 or msg.duration.nanos < 0:
        raise ConversionError(f"{field}.duration", "must not be negative")
    return d.ExecutionStep(
        run_id=msg.run_id,
        sequence=msg.sequence,
        time=timestamp_from_pb(msg.time, f"{field}.time"),
        duration=duration_from_pb(msg.duration, f"{field}.duration"),
        payload=payload,
        depth=msg.depth,
    )


# --- runs ----------------------------------------------------------------------------------------------------


def tool_call_to_pb(value: d.ToolCallRecord) -> run_pb2.ToolCall:
    return run_pb2.ToolCall(
        id=value.id,
        name=value.name,
        server=value.server,
        parameters_json=value.parameters_json,
        result=value.result,
        duration=duration_to_pb(value.duration),
        status=_TOOL_STATUS_TO_PB[value.status],
        start_time=timestamp_to_pb(value.start_time),
        is_error=value.is_error,
    )


def tool_call_from_pb(msg: run_pb2.ToolCall, field: str) -> d.ToolCallRecord:
    if not msg.id:
        raise ConversionError(f"{field}.id", "must not be empty")
    if not msg.name:
        raise ConversionError(f"{field}.name", "must not be empty")
    if not msg.HasField("start_time"):
        raise ConversionError(f"{field}.start_time", "must be set")
    return d.ToolCallRecord(
        id=msg.id,
        name=msg.name,
        server=msg.server,
        parameters_json=msg.parameters_json,
        result=msg.result,
        duration=duration_from_pb(msg.duration, f"{field}.duration"),
        status=tool_status_from_pb(msg.status, f"{field}.status"),
        start_time=timestamp_from_pb(msg.start_time, f"{field}.start_time"),
        is_error=msg.is_error,
    )


def run_to_pb(run: d.Run) -> run_pb2.Run:
    msg = run_pb2.Run(
        id=run.id,
        agent_name=run.agent_name,
        agent_version=run.agent_version,
        user=run.user,
        task=run.task,
        labels=run.labels,
        variables=run.variables,
        status=_RUN_STATUS_TO_PB[run.status],
        final_response=run.final_response,
        model_name=run.model_name,
        start_time=timestamp_to_pb(run.start_time),
        token_usage=token_usage_to_pb(run.token_usage),
        steps_taken=run.steps_taken,
        tools_used=list(run.tools_used),
        trace_id=run.trace_id,
        execution_steps=[step_to_pb(s) for s in run.execution_steps],
        tool_calls=[tool_call_to_pb(t) for t in run.tool_calls],
        parent_run_id=run.parent_run_id,
        root_run_id=run.root_run_id,
        parent_tool_call_id=run.parent_tool_call_id,
        depth=run.depth,
        session_id=run.session_id,
        max_context_window_used=run.max_context_window_used,
        tool_call_count=run.tool_calls_made,
    )
    if run.forked_from is not None:
        msg.forked_from.CopyFrom(run_pb2.ForkOrigin(run_id=run.forked_from.run_id, sequence=run.forked_from.sequence))
    if run.token_usage_with_descendants is not None:
        msg.token_usage_with_descendants.CopyFrom(token_usage_to_pb(run.token_usage_with_descendants))
    if run.cost_with_descendants is not None:
        msg.cost_with_descendants.CopyFrom(cost_to_pb(run.cost_with_descendants))
    if run.error is not None:
        msg.error.CopyFrom(run_error_to_pb(run.error))
    if run.end_time is not None:
        msg.end_time.CopyFrom(timestamp_to_pb(run.end_time))
    if run.duration is not None:
        msg.duration.CopyFrom(duration_to_pb(run.duration))
    if run.queue_duration is not None:
        msg.queue_duration.CopyFrom(duration_to_pb(run.queue_duration))
    if run.cost is not None:
        msg.cost.CopyFrom(cost_to_pb(run.cost))
    return msg


def run_from_pb(msg: run_pb2.Run) -> d.Run:
    """Converts and checks the shape of a Run message; raises ConversionError naming the field."""
    if not msg.HasField("start_time"):
        raise ConversionError("run.start_time", "must be set")
    if msg.steps_taken < 0:
        raise ConversionError("run.steps_taken", f"must not be negative, got {msg.steps_taken}")
    if msg.HasField("duration") and (msg.duration.seconds < 0 or msg.duration.nanos < 0):
        raise ConversionError("run.duration", "must not be negative")
    problem = share_problem(msg.max_context_window_used)
    if problem is not None:
        raise ConversionError("run.max_context_window_used", problem)
    if msg.HasField("queue_duration") and (msg.queue_duration.seconds < 0 or msg.queue_duration.nanos < 0):
        raise ConversionError("run.queue_duration", "must not be negative")
    return d.Run(
        id=msg.id,
        agent_name=msg.agent_name,
        agent_version=msg.agent_version,
        user=msg.user,
        task=msg.task,
        labels=dict(msg.labels),
        variables=dict(msg.variables),
        status=run_status_from_pb(msg.status, "run.status"),
        error=d.RunError(reason=msg.error.reason, message=msg.error.message) if msg.HasField("error") else None,
        final_response=msg.final_response,
        model_name=msg.model_name,
        start_time=timestamp_from_pb(msg.start_time, "run.start_time"),
        end_time=timestamp_from_pb(msg.end_time, "run.end_time") if msg.HasField("end_time") else None,
        duration=duration_from_pb(msg.duration, "run.duration") if msg.HasField("duration") else None,
        queue_duration=duration_from_pb(msg.queue_duration, "run.queue_duration")
        if msg.HasField("queue_duration")
        else None,
        token_usage=token_usage_from_pb(msg.token_usage, "run.token_usage"),
        cost=cost_from_pb(msg.cost, "run.cost") if msg.HasField("cost") else None,
        steps_taken=msg.steps_taken,
        tools_used=tuple(msg.tools_used),
        trace_id=msg.trace_id,
        execution_steps=tuple(step_from_pb(s, f"run.execution_steps[{i}]") for i, s in enumerate(msg.execution_steps)),
        tool_calls=tuple(tool_call_from_pb(t, f"run.tool_calls[{i}]") for i, t in enumerate(msg.tool_calls)),
        parent_run_id=msg.parent_run_id,
        root_run_id=msg.root_run_id,
        parent_tool_call_id=msg.parent_tool_call_id,
        depth=msg.depth,
        session_id=msg.session_id,
        forked_from=d.ForkOrigin(run_id=msg.forked_from.run_id, sequence=msg.forked_from.sequence)
        if msg.HasField("forked_from")
        else None,
        token_usage_with_descendants=token_usage_from_pb(
            msg.token_usage_with_descendants, "run.token_usage_with_descendants"
        )
        if msg.HasField("token_usage_with_descendants")
        else None,
        cost_with_descendants=cost_from_pb(msg.cost_with_descendants, "run.cost_with_descendants")
        if msg.HasField("cost_with_descendants")
        else None,
        max_context_window_used=msg.max_context_window_used,
        # The count stands for the tool calls only when they are left out (the BASIC view); see d.Run.
        tool_call_count=0 if msg.tool_calls else max(msg.tool_call_count, 0),
    )
