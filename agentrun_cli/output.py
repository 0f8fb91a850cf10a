"""Where output goes: the rich console for people, JSON for programs.

What people read shows control characters instead of obeying them: a model's answer or a tool's result holding
ESC[2J or a carriage return must not clear or rewrite the reader's terminal. Each C0 control (tab and newline aside)
and DEL become their Unicode control picture (ESC: U+241B), C1 controls U+FFFD; one character each, so columns keep
their width. Bidirectional-text controls (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F, U+061C), which would
visually reorder what follows them ("over\u202egnp.exe" reads as "overexe.png"), have no control picture: they
become a visible placeholder naming their code point, "⟨U+202E⟩" (wider than the zero-width character, so a table
cell holding one is wider by that much). JSON output is untouched (the JSON escapes them, or keeps them as they are).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, ConsoleOptions, RenderableType
from rich.segment import Segment

_CONTROL_PICTURES = {code: 0x2400 + code for code in range(0x20) if chr(code) not in "\t\n"} | {0x7F: 0x2421}
_BIDI_CONTROLS = (*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C)
_CONTROLS: dict[int, int | str] = {
    **_CONTROL_PICTURES,
    **{code: 0xFFFD for code in range(0x80, 0xA0)},
    **{code: f"\u27e8U+{code:04X}\u27e9" for code in _BIDI_CONTROLS},
}


def printable(text: str) -> str:
    """`text` with its control characters shown, not obeyed (see the module docstring)."""
    return text.translate(_CONTROLS)


class _PrintableConsole(Console):
    """A Console whose rendered text shows control characters (its own styling and cursor controls are kept)."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            yield segment if segment.control else Segment(printable(segment.text), segment.style)


_console: Console | None = None


def console() -> Console:
    """The stdout console, created on first use so tests that swap sys.stdout get their own."""
    global _console
    if _console is None or _console.file is not sys.stdout:
        _console = _PrintableConsole(file=sys.stdout, highlight=False)
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
    """A plain line for people, never wrapped or styled: what pipes and CI logs see (control characters shown)."""
    print_data_line(printable(text))


def print_data_line(text: str) -> None:
    """A line for programs (a JSON line), written as it is: lossless."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
