"""Small formatters shared by the views: durations, timestamps, token counts, statuses, costs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from agentrun.runs.v1 import run_pb2, runs_service_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from rich.text import Text

NONE = "—"

# What carries a group's cost: a GetRunStats group or a ListSessions session.
CostSums = runs_service_pb2.RunStatsGroup | runs_service_pb2.Session

_STATUS_STYLES = {
    run_pb2.RUN_STATUS_QUEUED: "blue",
    run_pb2.RUN_STATUS_RUNNING: "cyan",
    run_pb2.RUN_STATUS_COMPLETED: "green",
    run_pb2.RUN_STATUS_FAILED: "red",
    run_pb2.RUN_STATUS_CANCELLED: "yellow",
    run_pb2.RUN_STATUS_TIMED_OUT: "magenta",
    run_pb2.RUN_STATUS_INTERRUPTED: "red",
}
_TOOL_STATUS_STYLES = {
    run_pb2.TOOL_CALL_STATUS_RUNNING: "cyan",
    run_pb2.TOOL_CALL_STATUS_SUCCEEDED: "green",
    run_pb2.TOOL_CALL_STATUS_FAILED: "red",
    run_pb2.TOOL_CALL_STATUS_TIMED_OUT: "magenta",
    run_pb2.TOOL_CALL_STATUS_CANCELLED: "yellow",
}


def status_name(status: int) -> str:
    """RUN_STATUS_COMPLETED -> COMPLETED."""
    try:
        return run_pb2.RunStatus.Name(status).removeprefix("RUN_STATUS_")
    except ValueError:
        return f"STATUS_{status}"


def status_text(status: int) -> Text:
    return Text(status_name(status), style=_STATUS_STYLES.get(status, ""))  # type: ignore[call-overload]


def tool_status_name(status: int) -> str:
    try:
        return run_pb2.ToolCallStatus.Name(status).removeprefix("TOOL_CALL_STATUS_")
    except ValueError:
        return f"STATUS_{status}"


def tool_status_text(status: int) -> Text:
    return Text(tool_status_name(status), style=_TOOL_STATUS_STYLES.get(status, ""))  # type: ignore[call-overload]


def seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos / 1e9


def human_seconds(value: float) -> str:
    """12 ms, 3.42 s, 2m 03s, 1h 02m."""
    if value < 1:
        return f"{round(value * 1000)} ms"
    if value < 60:
        return f"{value:.0f} s" if value == int(value) else f"{value:.2f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def duration(value: duration_pb2.Duration) -> str:
    return human_seconds(seconds(value))


def optional_duration(parent: Message, field: str) -> str:
    """The duration `field` of `parent`, or — when the message does not have it."""
    if not parent.HasField(field):
        return NONE
    return duration(getattr(parent, field))


def to_datetime(value: timestamp_pb2.Timestamp) -> datetime:
    return datetime.fromtimestamp(value.seconds + value.nanos / 1e9, UTC)


def timestamp(value: timestamp_pb2.Timestamp) -> str:
    """2026-11-25 13:31:02Z (UTC, second precision)."""
    return to_datetime(value).strftime("%Y-%m-%d %H:%M:%SZ")


def optional_timestamp(parent: Message, field: str) -> str:
    if not parent.HasField(field):
        return NONE
    return timestamp(getattr(parent, field))


def seconds_between(start: timestamp_pb2.Timestamp, end: timestamp_pb2.Timestamp) -> float:
    return (end.seconds - start.seconds) + (end.nanos - start.nanos) / 1e9


def offset(start: timestamp_pb2.Timestamp, at: timestamp_pb2.Timestamp) -> str:
    """`at` relative to `start`: +1.234s."""
    delta = seconds_between(start, at)
    return f"+{delta:.3f}s" if delta >= 0 else f"{delta:.3f}s"


def percent(value: float) -> str:
    """0.9731 -> 97.3%."""
    return f"{value * 100:.1f}%"


def count(value: int) -> str:
    return f"{value:,}"


def plural(value: int, noun: str) -> str:
    """`1 turn`, `2 turns`."""
    return f"{count(value)} {noun}" if value == 1 else f"{count(value)} {noun}s"


def total_tokens(usage: run_pb2.TokenUsage) -> int:
    return usage.total_tokens or usage.input_tokens + usage.output_tokens + usage.thinking_tokens


def tokens_brief(usage: run_pb2.TokenUsage) -> str:
    """`1,234 tokens (1,000 in / 234 out)`, with cached, thinking and tool-use prompt counts when there are any."""
    parts = [f"{count(usage.input_tokens)} in", f"{count(usage.output_tokens)} out"]
    if usage.cached_tokens:
        parts.append(f"{count(usage.cached_tokens)} cached")
    if usage.thinking_tokens:
        parts.append(f"{count(usage.thinking_tokens)} thinking")
    if usage.tool_use_prompt_tokens:
        parts.append(f"{count(usage.tool_use_prompt_tokens)} tool-use prompt")
    return f"{count(total_tokens(usage))} tokens ({' / '.join(parts)})"


def cost(value: run_pb2.Cost | None) -> str:
    """`0.001496 USD`, or — when the price is unknown."""
    if value is None or not value.amount:
        return NONE
    return f"{value.amount} {value.currency_code or 'USD'}"


def group_cost(value: CostSums) -> str:
    """The cost of a stats group or session: its `cost` (`0.35 USD`); when its runs were priced in several currencies
    (no single total), each currency's sum (`1.00 EUR + 2.50 USD`); — when no run of it was priced."""
    if value.HasField("cost"):
        return cost(value.cost)
    parts = [cost(each) for each in value.cost_by_currency if each.amount]
    return " + ".join(parts) if parts else NONE


def truncate(text: str, limit: int) -> str:
    """One line, at most `limit` characters (an ellipsis marks the cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(limit - 1, 0)] + "…"


def compact_json(text: str) -> str:
    """JSON text re-serialised without spaces (kept as is when it is not JSON)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return text


def tool_label(tool_name: str, server: str = "") -> str:
    """`time/get_current_time`: the server prefix is added unless the name already has one."""
    if server and "/" not in tool_name:
        return f"{server}/{tool_name}"
    return tool_name


def short_version(version: str, length: int = 12) -> str:
    """The first `length` hex digits of a content hash, without an algorithm prefix such as `sha256:`."""
    return version.rpartition(":")[2][:length]
