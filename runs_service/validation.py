"""Checks a run before RunsService stores it; every problem is an InvalidArgument naming the field.

The rules live in one place, `validate_rows`, over the rows that store a run: RecordRun and RecordRuns build those
rows straight from protobuf (runs_service.api.run_rows) and domain callers through `validate_run`. The composition
fields (sub-agent tree, session, fork) are checked by runs_service.validation_composition, called from here.

Field names follow the request message: `run.id`, `run.execution_steps[3].sequence`, `run.tool_calls[0].id`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from agentrun_core.domain import ExecutionStep, Run
from agentrun_core.echo import shown
from agentrun_core.ids import run_id_problem
from agentrun_core.labels import label_problem
from runs_service import validation_composition as composition
from runs_service.errors import InvalidArgument
from runs_service.storage.tables import runs as runs_table
from runs_service.storage.tables import tool_calls as tool_calls_table

if TYPE_CHECKING:
    from runs_service.storage.rows import RunRows

# The largest cost the cost column (NUMERIC(20, 10)) holds exactly.
_COST_MAX_INTEGER_DIGITS = 10
_COST_MAX_FRACTION_DIGITS = 10


def _max_length(column_name: str, table: str = "runs") -> int | None:
    source = runs_table if table == "runs" else tool_calls_table
    length = getattr(source.c[column_name].type, "length", None)
    return length if isinstance(length, int) else None


_RUN_STRING_FIELDS: tuple[tuple[str, str], ...] = (
    # (Run attribute, runs column)
    ("agent_name", "agent_name"),
    ("agent_version", "agent_version"),
    ("user", "user_name"),
    ("model_name", "model_name"),
    ("trace_id", "trace_id"),
)
_RUN_STRING_LIMITS = {attr: _max_length(column) for attr, column in _RUN_STRING_FIELDS}
_TOOL_NAME_LIMIT = _max_length("name", "tool_calls")
_TOOL_SERVER_LIMIT = _max_length("server", "tool_calls")
_TOOL_ID_LIMIT = _max_length("call_id", "tool_calls")
_ERROR_REASON_LIMIT = _max_length("error_reason")
_PRICE_TABLE_LIMIT = _max_length("price_table_version")


def _check_time(field: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(field, "must be a timezone-aware datetime (UTC)")


def _check_length(field: str, value: str, limit: int | None) -> None:
    if limit is not None and len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters, got {len(value)}")


def _check_cost(amount: Decimal, field: str = "run.cost.amount") -> None:
    if not amount.is_finite() or amount < 0:
        raise InvalidArgument(field, f"must be a finite, non-negative decimal, got {amount}")
    _sign, digits, exponent = amount.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = len("".join(map(str, digits)).strip("0"))
    if significant > _COST_MAX_SIGNIFICANT_DIGITS:
        # SQLite stores NUMERIC as a double: more digits would not come back unchanged.
        raise InvalidArgument(
            field, f"must have at most {_COST_MAX_SIGNIFICANT_DIGITS} significant digits, got {amount}"
        )
    integer_digits = max(0, len(digits) + exponent)
    if integer_digits > _COST_MAX_INTEGER_DIGITS:
        raise InvalidArgument(field, f"must be below 10^{_COST_MAX_INTEGER_DIGITS}, got {amount}")
    if -exponent > _COST_MAX_FRACTION_DIGITS and amount != round(amount, _COST_MAX_FRACTION_DIGITS):
        raise InvalidArgument(field, f"must have at most {_COST_MAX_FRACTION_DIGITS} decimal places, got {amount}")


_COST_MAX_SIGNIFICANT_DIGITS = 15


def _check_no_nul(field: str, value: object) -> None:
    """Text may hold any character but NUL, which PostgreSQL cannot store (in text or JSONB)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidArgument(field, f"must not contain NUL characters (at offset {value.index(chr(0))})")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_no_nul(f"{field}[{shown(key)}]", key)
            _check_no_nul(f"{field}[{shown(key)}]", item)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_no_nul(f"{field}[{index}]", item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _check_no_nul(f"{field}.{f.name}", getattr(value, f.name))


def check_no_nul(run: Run) -> None:
    """InvalidArgument naming the first field holding a NUL character. Storage calls it when the canonical rows
    of a run contain one (a cheap test), so validate_run does not walk every string of every run."""
    _check_no_nul("run", run)


def validate_run(run: Run) -> None:
    """Raises InvalidArgument(field, message) for the first problem found in a domain `run`: what only a domain
    value can get wrong (naive datetimes, a step naming another run), then every rule of validate_rows on the rows
    that would store it."""
    from runs_service.storage.rows import run_to_rows

    problem = run_id_problem(run.id)
    if problem is not None:
        raise InvalidArgument("run.id", problem)
    _check_time("run.start_time", run.start_time)
    if run.end_time is not None:
        _check_time("run.end_time", run.end_time)
    for index, step in enumerate(run.execution_steps):
        field = f"run.execution_steps[{index}]"
        if step.run_id and step.run_id != run.id:
            raise InvalidArgument(
                f"{field}.run_id", f"must be empty or the run's id {shown(run.id)}, got {shown(step.run_id)}"
            )
        composition.check_step_depth(field, step.depth)
        _check_time(f"{field}.time", step.time)
    for index, call in enumerate(run.tool_calls):
        _check_time(f"run.tool_calls[{index}].start_time", call.start_time)
    validate_rows(run_to_rows(run))


def _composition_view(row: Mapping[str, Any]) -> Run:
    """A run holding just what validation_composition.check_run reads, from its runs row."""
    from runs_service.storage.rows import run_from_row

    return run_from_row(row)


def _step_view(step: Mapping[str, Any]) -> ExecutionStep:
    """A stored step (depth 0: checked before the rows were built) for validation_composition.check_step."""
    from runs_service.storage.rows import step_from_row

    return step_from_row(step)


def _check_micros(field: str, value: int) -> None:
    if value < 0:
        raise InvalidArgument(field, f"must not be negative, got {timedelta(microseconds=value)}")


# A run's token count is at most this (10^12: a thousand times the largest context window, for each of a thousand
# turns). Bounded so that the sums over millions of runs that stats and sessions report stay within 64 bits.
MAX_TOKEN_COUNT = 10**12
# How far a run's duration may be from end_time - start_time (the producer's rounding).
_DURATION_SLACK = timedelta(milliseconds=1)
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _check_counts(field: str, usage: Mapping[str, Any], *, bounded: bool = True) -> None:
    """Counts are never negative; a run's or a model call's own (`bounded`) are at most MAX_TOKEN_COUNT (a tree's
    totals are not summed over runs, and sum up to as many runs as the tree has)."""
    for name in _TOKEN_NAMES:
        count = usage.get(name, 0)
        if count < 0:
            raise InvalidArgument(f"{field}.{name}", f"must not be negative, got {count}")
        if bounded and count > MAX_TOKEN_COUNT:
            raise InvalidArgument(f"{field}.{name}", f"must be at most 10^12, got {count}")


def _check_duration(run: Mapping[str, Any]) -> None:
    duration_us, end_time = run["duration_us"], run["end_time"]
    if duration_us is None or end_time is None:
        return
    elapsed = end_time - run["start_time"]
    if abs(timedelta(microseconds=duration_us) - elapsed) > _DURATION_SLACK:
        raise InvalidArgument(
            "run.duration",
            f"must be end_time - start_time ({elapsed.total_seconds():.6f}s), "
            f"got {timedelta(microseconds=duration_us).total_seconds():.6f}s",
        )


def _check_trace_id(trace_id: str) -> None:
    if trace_id and (not _TRACE_ID.fullmatch(trace_id) or trace_id == "0" * 32):
        raise InvalidArgument(
            "run.trace_id",
            f"must be empty or a W3C trace id (32 lower-case hex digits, not all 0), got {shown(trace_id)}",
        )


def _check_currency(field: str, code: str) -> None:
    if not _CURRENCY.fullmatch(code):
        raise InvalidArgument(field, f"must be an ISO 4217 code such as USD, got {shown(code)}")


_TOKEN_NAMES = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "thinking_tokens",
    "tool_use_prompt_tokens",
)


def validate_rows(rows: RunRows) -> None:
    """Raises InvalidArgument(field, message) for the first problem found in the rows of one run (as
    runs_service.storage.rows.run_to_rows or the RecordRun fast path builds them). Field names follow the request
    message (`run.user`, `run.execution_steps[3].sequence`, `run.tool_calls[0].id`). NUL characters are checked
    when the rows are built."""
    run = rows.run
    run_id = run["id"]
    problem = run_id_problem(run_id)
    if problem is not None:
        raise InvalidArgument("run.id", problem)
    if not run["agent_name"]:
        raise InvalidArgument("run.agent_name", "must not be empty")
    for attr, column in _RUN_STRING_FIELDS:
        _check_length(f"run.{attr}", run[column], _RUN_STRING_LIMITS[attr])

    start_time: datetime = run["start_time"]
    end_time: datetime | None = run["end_time"]
    if end_time is not None:
        if end_time < start_time:
            raise InvalidArgument(
                "run.end_time",
                f"must not be before start_time ({end_time.isoformat()} < {start_time.isoformat()})",
            )
    elif run["status"] not in ("RUNNING", "QUEUED"):
        raise InvalidArgument("run.end_time", f"must be set for a run with terminal status {run['status']}")
    if run["duration_us"] is not None:
        _check_micros("run.duration", run["duration_us"])
        _check_duration(run)
    if run["queue_duration_us"] is not None:
        _check_micros("run.queue_duration", run["queue_duration_us"])
    if run["steps_taken"] < 0:
        raise InvalidArgument("run.steps_taken", f"must not be negative, got {run['steps_taken']}")
    _check_counts("run.token_usage", run)
    _check_trace_id(run["trace_id"])
    for key, value in run["labels"].items():
        problem = label_problem(key, value)
        if problem is not None:
            raise InvalidArgument("run.labels", problem)
    if run["error_reason"] is not None:
        _check_length("run.error.reason", run["error_reason"], _ERROR_REASON_LIMIT)
    if run["cost"] is not None:
        _check_cost(run["cost"])
        _check_currency("run.cost.currency_code", run["cost_currency"])
        _check_length("run.cost.price_table_version", run["price_table_version"], _PRICE_TABLE_LIMIT)
    totals = run["totals_with_descendants"] or {}
    if totals.get("token_usage") is not None:
        _check_counts("run.token_usage_with_descendants", totals["token_usage"], bounded=False)
    cost_with_descendants = totals.get("cost")
    if cost_with_descendants is not None:
        _check_cost(Decimal(cost_with_descendants["amount"]), "run.cost_with_descendants.amount")
        _check_currency("run.cost_with_descendants.currency_code", cost_with_descendants["currency_code"])
        _check_length(
            "run.cost_with_descendants.price_table_version",
            cost_with_descendants["price_table_version"],
            _PRICE_TABLE_LIMIT,
        )
    composed = _composition_view(run)
    composition.check_run(composed)

    steps = rows.steps
    for index, step in enumerate(steps):
        if step["sequence"] != index + 1:
            raise InvalidArgument(
                f"run.execution_steps[{index}].sequence",
                f"steps must be numbered 1..{len(steps)} in order: expected {index + 1}, got {step['sequence']}",
            )
        if step["duration_us"] < 0:
            _check_micros(f"run.execution_steps[{index}].duration", step["duration_us"])
        kind = step["kind"]
        if kind == "session_history" or step["payload"].get("child_run_id"):
            composition.check_step(f"run.execution_steps[{index}]", _step_view(step), composed)
        if kind == "model_call":
            payload = step["payload"]
            _check_counts(f"run.execution_steps[{index}].model_call.usage", payload["usage"])
            ttft = payload["time_to_first_token_us"]
            if ttft is not None and ttft < 0:
                _check_micros(f"run.execution_steps[{index}].model_call.time_to_first_token", ttft)
        elif kind == "tool_result" and step["payload"]["duration_us"] < 0:
            _check_micros(f"run.execution_steps[{index}].tool_result.duration", step["payload"]["duration_us"])

    seen: dict[str, int] = {}
    for index, call in enumerate(rows.tool_calls):
        field = f"run.tool_calls[{index}]"
        call_id = call["call_id"]
        if not call_id:
            raise InvalidArgument(f"{field}.id", "must not be empty")
        if call_id in seen:
            raise InvalidArgument(
                f"{field}.id", f"duplicate tool call id {shown(call_id)} (also run.tool_calls[{seen[call_id]}])"
            )
        seen[call_id] = index
        _check_length(f"{field}.id", call_id, _TOOL_ID_LIMIT)
        if not call["name"]:
            raise InvalidArgument(f"{field}.name", "must not be empty")
        _check_length(f"{field}.name", call["name"], _TOOL_NAME_LIMIT)
        _check_length(f"{field}.server", call["server"], _TOOL_SERVER_LIMIT)
        _check_micros(f"{field}.duration", call["duration_us"])
