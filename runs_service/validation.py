"""Checks a Run before RunsService stores it; every problem is an InvalidArgument naming the field.

The composition fields (sub-agent tree, session, fork) are checked by runs_service.validation_composition.

Field names follow the request message: `run.id`, `run.execution_steps[3].sequence`, `run.tool_calls[0].id`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal

from agentrun_core.domain import Run
from agentrun_core.echo import shown
from agentrun_core.ids import run_id_problem
from agentrun_core.labels import label_key_problem
from runs_service import validation_composition as composition
from runs_service.errors import InvalidArgument
from runs_service.storage.tables import runs as runs_table
from runs_service.storage.tables import tool_calls as tool_calls_table

_ZERO = timedelta(0)
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
_CURRENCY_LIMIT = _max_length("cost_currency")
_PRICE_TABLE_LIMIT = _max_length("price_table_version")


def _check_time(field: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidArgument(field, "must be a timezone-aware datetime (UTC)")


def _check_length(field: str, value: str, limit: int | None) -> None:
    if limit is not None and len(value) > limit:
        raise InvalidArgument(field, f"must be at most {limit} characters, got {len(value)}")


def _check_duration(field: str, value: timedelta) -> None:
    if value < _ZERO:
        raise InvalidArgument(field, f"must not be negative, got {value}")


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
    """Raises InvalidArgument(field, message) for the first problem found in `run` (NUL characters: check_no_nul)."""
    problem = run_id_problem(run.id)
    if problem is not None:
        raise InvalidArgument("run.id", problem)
    if not run.agent_name:
        raise InvalidArgument("run.agent_name", "must not be empty")
    for attr, limit in _RUN_STRING_LIMITS.items():
        _check_length(f"run.{attr}", getattr(run, attr), limit)

    _check_time("run.start_time", run.start_time)
    if run.end_time is not None:
        _check_time("run.end_time", run.end_time)
        if run.end_time < run.start_time:
            raise InvalidArgument(
                "run.end_time",
                f"must not be before start_time ({run.end_time.isoformat()} < {run.start_time.isoformat()})",
            )
    elif run.status.is_terminal:
        raise InvalidArgument("run.end_time", f"must be set for a run with terminal status {run.status.value}")
    if run.duration is not None:
        _check_duration("run.duration", run.duration)
    if run.steps_taken < 0:
        raise InvalidArgument("run.steps_taken", f"must not be negative, got {run.steps_taken}")
    for name, count in run.token_usage.counts().items():
        if count < 0:
            raise InvalidArgument(f"run.token_usage.{name}", f"must not be negative, got {count}")
    for key in run.labels:
        problem = label_key_problem(key)
        if problem is not None:
            raise InvalidArgument("run.labels", problem)
    if run.error is not None:
        _check_length("run.error.reason", run.error.reason, _ERROR_REASON_LIMIT)
    for name, cost in (("cost", run.cost), ("cost_with_descendants", run.cost_with_descendants)):
        if cost is not None:
            _check_cost(cost.amount, f"run.{name}.amount")
            _check_length(f"run.{name}.currency_code", cost.currency_code, _CURRENCY_LIMIT)
            _check_length(f"run.{name}.price_table_version", cost.price_table_version, _PRICE_TABLE_LIMIT)
    composition.check_run(run)

    for index, step in enumerate(run.execution_steps):
        field = f"run.execution_steps[{index}]"
        if step.run_id and step.run_id != run.id:
            raise InvalidArgument(
                f"{field}.run_id", f"must be empty or the run's id {shown(run.id)}, got {shown(step.run_id)}"
            )
        if step.sequence != index + 1:
            raise InvalidArgument(
                f"{field}.sequence",
                f"steps must be numbered 1..{len(run.execution_steps)} in order: expected {index + 1}, "
                f"got {step.sequence}",
            )
        _check_time(f"{field}.time", step.time)
        _check_duration(f"{field}.duration", step.duration)
        composition.check_step(field, step, run)
        usage = getattr(step.payload, "usage", None)
        if usage is not None:
            for name, count in usage.counts().items():
                if count < 0:
                    raise InvalidArgument(f"{field}.model_call.usage.{name}", f"must not be negative, got {count}")
        payload_duration = getattr(step.payload, "duration", None)
        if isinstance(payload_duration, timedelta):
            _check_duration(f"{field}.tool_result.duration", payload_duration)
        ttft = getattr(step.payload, "time_to_first_token", None)
        if isinstance(ttft, timedelta):
            _check_duration(f"{field}.model_call.time_to_first_token", ttft)

    seen: dict[str, int] = {}
    for index, call in enumerate(run.tool_calls):
        field = f"run.tool_calls[{index}]"
        if not call.id:
            raise InvalidArgument(f"{field}.id", "must not be empty")
        if call.id in seen:
            raise InvalidArgument(
                f"{field}.id", f"duplicate tool call id {shown(call.id)} (also run.tool_calls[{seen[call.id]}])"
            )
        seen[call.id] = index
        _check_length(f"{field}.id", call.id, _TOOL_ID_LIMIT)
        if not call.name:
            raise InvalidArgument(f"{field}.name", "must not be empty")
        _check_length(f"{field}.name", call.name, _TOOL_NAME_LIMIT)
        _check_length(f"{field}.server", call.server, _TOOL_SERVER_LIMIT)
        _check_time(f"{field}.start_time", call.start_time)
        _check_duration(f"{field}.duration", call.duration)
