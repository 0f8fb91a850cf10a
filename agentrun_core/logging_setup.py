"""Structured logging for both services: one JSON object per line (or readable text for a terminal).

Context goes in `extra=`: `log.info("run finished", extra={"run_id": ..., "status": ...})` adds those keys.

Logged values may come from a request, so no line can be forged and none can grow without bound: in text logs,
control characters of the message and of each value (newline, carriage return, ANSI escapes, ...) are written as
escapes (`\n`, `\x1b`) and the lines of a traceback are indented, so every line that starts at column 0 is one this
formatter wrote; JSON logs escape them by construction. Each message and value is cut at MAX_VALUE_CHARS either way
(values are cut where they are logged, agentrun_core.echo; this is the last resort).
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
MAX_VALUE_CHARS = 4096
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a terminal or a log viewer may
# take as a line break or an escape sequence.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
TRACEBACK_INDENT = "    "
_JSON_UNESCAPED = re.compile("[\x7f-\x9f\u2028\u2029]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_controls(text: str) -> str:
    """`text` with every control character written as an escape: it is then one line, shown as it was sent."""
    return _CONTROL.sub(_escape_char, text)


def _bounded(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}... ({len(text)} characters, cut)"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _bounded(record.getMessage()),
        }
        for key, value in _extras(record).items():
            out[key] = _bounded(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        # orjson escapes C0 controls; DEL, C1 controls and U+2028/U+2029 (line breaks to some readers) too.
        return _JSON_UNESCAPED.sub(_json_escape, orjson.dumps(out, default=str).decode())


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        """One line (the message and the extras, control characters escaped), then any traceback, indented."""
        record.message = escape_controls(_bounded(record.getMessage()))
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={escape_controls(_bounded(str(v)))}" for k, v in extras.items())
        trailer = []
        if record.exc_info:
            trailer.append(self.formatException(record.exc_info))
        if record.stack_info:
            trailer.append(self.formatStack(record.stack_info))
        for text in trailer:
            line += "".join(f"\n{TRACEBACK_INDENT}{escape_controls(part)}" for part in text.splitlines())
        return line


class PoolErrorsAsWarnings(logging.Filter):
    """SQLAlchemy's pool logs at ERROR, with a traceback, each connection it could not reset, close or terminate:
    when the database drops connections (a restart, a failover, an administrator) and at shutdown. Nothing a caller
    sees failed there (the connection is discarded and a new one made when needed; a query that did fail is reported
    where it failed), so each becomes one WARNING line naming the database error, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("sqlalchemy.pool") or record.levelno < logging.ERROR or not record.exc_info:
            return True
        error = record.exc_info[1]
        what = record.getMessage().split(" <", 1)[0]  # without the connection's repr (an address)
        cause = _one_line(error) if error is not None else "unknown error"
        record.msg = "database pool: %s (%s); the connection was discarded"
        record.args = (what, cause)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """fmt: "json", "text", or "auto" (text on a terminal, JSON otherwise)."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(PoolErrorsAsWarnings())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in (
        "httpx",
        "httpx2",
        "httpcore",
        "httpcore2",
        "mcp",
        "aiosqlite",
        "sqlalchemy.engine",
        "alembic.runtime.plugins",
    ):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
