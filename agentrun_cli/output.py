"""Where output goes: the rich console for people, JSON for programs."""

from __future__ import annotations

import json
import sys

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console

_console: Console | None = None


def console() -> Console:
    """The stdout console, created on first use so tests that swap sys.stdout get their own."""
    global _console
    if _console is None or _console.file is not sys.stdout:
        _console = Console(file=sys.stdout, highlight=False)
    return _console


def to_dict(message: Message) -> dict[str, object]:
    """The canonical proto3 JSON mapping (lowerCamelCase names, enum names), with every field present."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def json_line(message: Message) -> str:
    """One compact JSON object on one line."""
    return json.dumps(to_dict(message), separators=(",", ":"), ensure_ascii=False)


def print_json(value: Message | dict[str, object]) -> None:
    data = to_dict(value) if isinstance(value, Message) else value
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def print_line(text: str = "") -> None:
    """A plain line, never wrapped or styled: what pipes and CI logs see."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
