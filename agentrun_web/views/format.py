"""Text for the pages: statuses (unknown enum values shown by number, never an error), durations, times, counts.

The plain-text formatters are the CLI's (agentrun_cli.render.format), so the console and `agentrun runs show` say the
same thing the same way.
"""

from __future__ import annotations

import json
import re

from agentrun.runs.v1 import run_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from markupsafe import Markup, escape

from agentrun_cli.render.format import (
    NONE,
    compact_json,
    cost,
    count,
    human_seconds,
    seconds,
    short_version,
    to_datetime,
    tool_label,
    total_tokens,
    truncate,
)

__all__ = [
    "NONE",
    "compact_json",
    "cost",
    "count",
    "human_seconds",
    "seconds",
    "short_version",
    "to_datetime",
    "tool_label",
    "total_tokens",
    "truncate",
]

# What the execution service writes where it removed a secret or cut a long result (execution_service/redaction).
_MARKERS = re.compile(r"\[REDACTED(?::[^\]\n]{0,80})?\]|\[truncated: [^\]\n]{0,80}\]")


def enum_name(enum: object, value: int, prefix: str) -> str:
    """RUN_STATUS_COMPLETED -> COMPLETED; a value this console's stubs do not know (a newer service) -> its number,
    e.g. STATUS_7, so the page still shows something true."""
    try:
        return str(enum.Name(value)).removeprefix(prefix)  # type: ignore[attr-defined]
    except ValueError:
        return f"STATUS_{value}"


def status_name(status: int) -> str:
    return enum_name(run_pb2.RunStatus, status, "RUN_STATUS_")


def status_class(status: int) -> str:
    """A CSS class per status; unknown statuses share one."""
    name = status_name(status)
    return "s-" + (name.lower().replace("_", "-") if not name.startswith("STATUS_") else "unknown")


_TERMINAL = frozenset(
    {
        run_pb2.RUN_STATUS_COMPLETED,
        run_pb2.RUN_STATUS_FAILED,
        run_pb2.RUN_STATUS_CANCELLED,
        run_pb2.RUN_STATUS_TIMED_OUT,
        run_pb2.RUN_STATUS_INTERRUPTED,
    }
)


def is_live(status: int) -> bool:
    """A run that has not ended: RUNNING, or a status newer than this console that is not one of the terminal ones
    (e.g. queued), so its page follows it live."""
    return status != run_pb2.RUN_STATUS_UNSPECIFIED and status not in _TERMINAL


def tool_status_name(status: int) -> str:
    return enum_name(run_pb2.ToolCallStatus, status, "TOOL_CALL_STATUS_")


def run_statuses() -> list[str]:
    """Every RunStatus this console knows but UNSPECIFIED, for the status quick filter."""
    return [
        value.name.removeprefix("RUN_STATUS_")
        for value in run_pb2.RunStatus.DESCRIPTOR.values
        if value.number != run_pb2.RUN_STATUS_UNSPECIFIED
    ]


def duration(value: duration_pb2.Duration) -> str:
    return human_seconds(seconds(value))


def optional_duration(parent: Message, name: str) -> str:
    return duration(getattr(parent, name)) if parent.HasField(name) else NONE


def timestamp(value: timestamp_pb2.Timestamp) -> str:
    """2026-11-25 13:31:02Z (UTC, second precision)."""
    return to_datetime(value).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(value: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 with milliseconds, for <time datetime=...> and scripts."""
    return to_datetime(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def optional_timestamp(parent: Message, name: str) -> str:
    return timestamp(getattr(parent, name)) if parent.HasField(name) else NONE


def offset_s(start: timestamp_pb2.Timestamp, at: timestamp_pb2.Timestamp) -> float:
    return (at.seconds - start.seconds) + (at.nanos - start.nanos) / 1e9


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def pretty_json(text: str) -> str:
    """JSON text indented for reading (kept as is when it is not JSON)."""
    if not text:
        return ""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def same_json(a: str, b: str) -> bool:
    """Whether two texts hold the same JSON value (a structured result that only repeats the text result)."""
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return a == b


def marked(text: str) -> Markup:
    """`text` escaped for HTML, with the redaction and truncation markers the execution service writes shown as
    what they are (a highlighted marker with an explanation), not as if the tool had said them."""
    out: list[str] = []
    last = 0
    for match in _MARKERS.finditer(text):
        out.append(str(escape(text[last : match.start()])))
        marker = match.group(0)
        if marker.startswith("[REDACTED"):
            title = "removed by the execution service's redaction before it was streamed or stored"
            css = "marker redacted"
        else:
            title = "the tool's result was cut here by the execution service (AGENTRUN_MAX_TOOL_RESULT_BYTES)"
            css = "marker truncated"
        out.append(f'<mark class="{css}" title="{escape(title)}">{escape(marker)}</mark>')
        last = match.end()
    out.append(str(escape(text[last:])))
    return Markup("".join(out))


def has_redaction(*texts: str) -> bool:
    return any("[REDACTED" in text for text in texts)
