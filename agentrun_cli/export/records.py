"""What one exported run looks like in each format.

- jsonl: one Run per line in the protobuf JSON mapping with the proto's field names (`agent_name`, `start_time`...):
  lossless, and `json_format.Parse(line, Run())` reads it back (int64 counts are strings there, as the mapping says).
- csv and parquet: one row per run with the flat COLUMNS below (docs/queries.md describes them).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from agentrun.runs.v1 import run_pb2
from google.protobuf import duration_pb2, json_format, timestamp_pb2

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUS = {value.number: value.name.removeprefix("RUN_STATUS_") for value in run_pb2.RunStatus.DESCRIPTOR.values}
_STATUS[run_pb2.RUN_STATUS_UNSPECIFIED] = ""


def jsonl_line(run: run_pb2.Run) -> bytes:
    return orjson.dumps(json_format.MessageToDict(run, preserving_proto_field_name=True)) + b"\n"


def _time(message: run_pb2.Run, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    value: timestamp_pb2.Timestamp = getattr(message, name)
    return _EPOCH + timedelta(microseconds=value.seconds * 1_000_000 + value.nanos // 1000)


def _seconds(value: duration_pb2.Duration) -> float:
    return round(value.seconds + value.nanos / 1e9, 6)


def _cost(cost: run_pb2.Cost) -> Decimal | None:
    return Decimal(cost.amount) if cost.amount else None


def _json_list(messages: Any) -> str:
    return orjson.dumps([json_format.MessageToDict(m, preserving_proto_field_name=True) for m in messages]).decode()


# (column, value of a Run) in order. Types: see PARQUET_TYPES.
COLUMNS: list[tuple[str, Callable[[run_pb2.Run], Any]]] = [
    ("id", lambda r: r.id),
    ("agent_name", lambda r: r.agent_name),
    ("agent_version", lambda r: r.agent_version),
    ("user", lambda r: r.user),
    ("status", lambda r: _STATUS.get(r.status, str(r.status))),
    ("start_time", lambda r: _time(r, "start_time")),
    ("end_time", lambda r: _time(r, "end_time")),
    ("duration_s", lambda r: _seconds(r.duration) if r.HasField("duration") else None),
    ("model_name", lambda r: r.model_name),
    ("input_tokens", lambda r: r.token_usage.input_tokens),
    ("output_tokens", lambda r: r.token_usage.output_tokens),
    ("total_tokens", lambda r: r.token_usage.total_tokens),
    ("cached_tokens", lambda r: r.token_usage.cached_tokens),
    ("thinking_tokens", lambda r: r.token_usage.thinking_tokens),
    ("tool_use_prompt_tokens", lambda r: r.token_usage.tool_use_prompt_tokens),
    ("cost", lambda r: _cost(r.cost) if r.HasField("cost") else None),
    ("cost_currency", lambda r: r.cost.currency_code if r.HasField("cost") else ""),
    ("price_table_version", lambda r: r.cost.price_table_version if r.HasField("cost") else ""),
    ("steps_taken", lambda r: r.steps_taken),
    ("tools_used", lambda r: list(r.tools_used)),
    ("labels", lambda r: dict(r.labels)),
    ("variables", lambda r: dict(r.variables)),
    ("error_reason", lambda r: r.error.reason if r.HasField("error") else ""),
    ("error_message", lambda r: r.error.message if r.HasField("error") else ""),
    ("task", lambda r: r.task),
    ("final_response", lambda r: r.final_response),
    ("trace_id", lambda r: r.trace_id),
    ("session_id", lambda r: r.session_id),
    ("parent_run_id", lambda r: r.parent_run_id),
    ("root_run_id", lambda r: r.root_run_id),
    ("parent_tool_call_id", lambda r: r.parent_tool_call_id),
    ("depth", lambda r: r.depth),
    ("forked_from_run_id", lambda r: r.forked_from.run_id if r.HasField("forked_from") else ""),
    ("forked_from_sequence", lambda r: r.forked_from.sequence if r.HasField("forked_from") else None),
    ("tool_call_count", lambda r: r.tool_call_count),
    ("queue_duration_s", lambda r: _seconds(r.queue_duration) if r.HasField("queue_duration") else None),
    ("max_context_window_used", lambda r: r.max_context_window_used),
    (
        "total_tokens_with_descendants",
        lambda r: r.token_usage_with_descendants.total_tokens if r.HasField("token_usage_with_descendants") else None,
    ),
    (
        "cost_with_descendants",
        lambda r: _cost(r.cost_with_descendants) if r.HasField("cost_with_descendants") else None,
    ),
]
# FULL view only: a run's steps and tool calls as JSON arrays (each element in the protobuf JSON mapping).
FULL_COLUMNS: list[tuple[str, Callable[[run_pb2.Run], Any]]] = [
    ("execution_steps", lambda r: _json_list(r.execution_steps)),
    ("tool_calls", lambda r: _json_list(r.tool_calls)),
]


def columns(full: bool) -> list[tuple[str, Callable[[run_pb2.Run], Any]]]:
    return COLUMNS + FULL_COLUMNS if full else COLUMNS


def csv_value(value: Any) -> str:
    """How a column value is written in CSV: times RFC 3339 UTC, JSON for lists and maps, empty for none."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, list | dict):
        return orjson.dumps(value).decode()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)
