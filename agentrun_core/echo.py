"""Quoting a caller's value in an error message or a log line: never more than a bounded prefix of it.

Every value a request carries (a run id, an agent name, a variable, a label key, a filter literal) reaches an error
message or a log line only through `shown`, so a 1 MB run id answers with a short message, not a 1 MB one (which a
client would see as RESOURCE_EXHAUSTED "received metadata size exceeds hard limit" instead of the real code).
"""

from __future__ import annotations

from collections.abc import Iterable

# At most this many characters of one value are shown (an invalid run id error is then ~170 characters long).
ECHO_CHARS = 80
# At most this many values of a list (unknown variables, candidates) are named; the rest are counted.
ECHO_ITEMS = 10


def shown(value: str, limit: int = ECHO_CHARS) -> str:
    """`value` quoted (repr) for a message: its first `limit` characters, and its length when it was cut."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def cut(text: str, limit: int) -> str:
    """`text` unquoted, cut to `limit` characters (ending in "...") when longer: for a message that quotes it its
    own way (the filter language's double quotes)."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def shown_list(values: Iterable[str], limit: int = ECHO_ITEMS) -> str:
    """`values` for a message, comma-separated, each `shown`, at most `limit` of them and the count of the rest."""
    items = list(values)
    head = ", ".join(shown(value) for value in items[:limit])
    return head if len(items) <= limit else f"{head} and {len(items) - limit} more"


def clipped(text: str, limit_bytes: int) -> str:
    """`text` (a whole message, already written for a person) cut to at most `limit_bytes` UTF-8 bytes, saying
    so: the last resort for a message that grew long anyway."""
    encoded = text.encode("utf-8", errors="replace")
    if len(encoded) <= limit_bytes:
        return text
    marker = f"... ({len(encoded)} bytes, cut)"
    head = encoded[: max(0, limit_bytes - len(marker))].decode("utf-8", errors="ignore")
    return head + marker
