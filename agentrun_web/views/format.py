"""Text for the pages: statuses (unknown enum values shown by number, never an error), durations, times, counts.

The plain-text formatters are the CLI's (agentrun_cli.render.format: statuses, durations, times, counts, tokens,
costs, percentages), one helper for both, so the console and `agentrun runs show` say the same thing the same way;
what is only the console's (HTML markers, ISO times for scripts, CSS classes) is here.
"""

from __future__ import annotations

import json
import re

from agentrun.runs.v1 import run_pb2
from google.protobuf import timestamp_pb2
from markupsafe import Markup, escape

from agentrun_cli.render.format import (
    NONE,
    cost,
    count,
    duration,
    group_cost,
    human_seconds,
    optional_duration,
    optional_timestamp,
    percent,
    seconds,
    short_version,
    status_name,
    timestamp,
    to_datetime,
    tool_label,
    tool_status_name,
    total_tokens,
    truncate,
)
from agentrun_cli.render.format import seconds_between as offset_s

__all__ = [
    "NONE",
    "cost",
    "count",
    "duration",
    "group_cost",
    "human_seconds",
    "offset_s",
    "optional_duration",
    "optional_timestamp",
    "percent",
    "seconds",
    "short_version",
    "status_name",
    "timestamp",
    "to_datetime",
    "tool_label",
    "tool_status_name",
    "total_tokens",
    "truncate",
]

# What the execution service writes where it removed a secret or cut a long result (execution_service/redaction).
_MARKERS = re.compile(r"\[REDACTED(?::[^\]\n]{0,80})?\]|\[truncated: [^\]\n]{0,80}\]")


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


def run_statuses() -> list[str]:
    """Every RunStatus this console knows but UNSPECIFIED, for the status quick filter."""
    return [
        value.name.removeprefix("RUN_STATUS_")
        for value in run_pb2.RunStatus.DESCRIPTOR.values
        if value.number != run_pb2.RUN_STATUS_UNSPECIFIED
    ]


def iso(value: timestamp_pb2.Timestamp) -> str:
    """RFC 3339 with milliseconds, for <time datetime=...> and scripts."""
    return to_datetime(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
