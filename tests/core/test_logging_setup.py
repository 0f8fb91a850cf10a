"""Logs cannot be forged through a logged value: with AGENTRUN_LOG_FORMAT=text, control characters in the message,
in extra values and in exception text are escaped (or the traceback indented), so every line that starts at column
0 is one the formatter wrote. JSON logs escape them by construction. Oversized values are cut."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import orjson
import pytest

from agentrun_core.logging_setup import MAX_VALUE_CHARS, configure_logging

FORGED = "x\n09:00:00 ERROR   forged: log line\r09:00:01 ERROR   again\x1b[2K\x1b[1Ahidden\u2028sep\x85nel"
LINE_START = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) +[\w.]+: ")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_text_logs_escape_control_characters_in_the_message_and_the_values(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "text")
    log = logging.getLogger("agentrun.test")
    log.warning("cancel refused for %s", FORGED, extra={"run_id": FORGED, "count": 3})
    (line,) = _lines(capsys)  # one record, one line
    assert LINE_START.match(line), line
    assert "\x1b" not in line and "\r" not in line and "\u2028" not in line and "\x85" not in line
    assert line.count("x\\n09:00:00 ERROR   forged: log line\\r09:00:01 ERROR   again\\x1b[2K\\x1b[1Ahidden") == 2
    assert "\\u2028sep\\x85nel" in line and line.endswith("count=3")


def test_a_traceback_is_indented_so_its_lines_cannot_pass_for_records(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "text")
    try:
        raise ValueError(FORGED)
    except ValueError:
        logging.getLogger("agentrun.test").exception("failed")
    first, *rest = _lines(capsys)
    assert LINE_START.match(first) and first.endswith("failed")
    assert rest[0] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in rest), rest  # continuation lines, never a record's start
    assert "    ValueError: x" in rest and "    09:00:00 ERROR   forged: log line" in rest
    assert not any("\x1b" in line for line in rest)


def test_json_logs_keep_each_record_on_one_line_with_the_values_intact(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    logging.getLogger("agentrun.test").warning("refused %s", FORGED, extra={"run_id": FORGED})
    (line,) = _lines(capsys)
    record = orjson.loads(line)
    assert record["message"] == f"refused {FORGED}" and record["run_id"] == FORGED


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_an_oversized_value_is_cut(fmt: str, restore_logging: None, capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", fmt)
    logging.getLogger("agentrun.test").warning("m %s", "a" * 1_000_000, extra={"run_id": "b" * 1_000_000})
    (line,) = _lines(capsys)
    assert len(line) < 3 * MAX_VALUE_CHARS
    assert "(1000002 characters, cut)" in line and "(1000000 characters, cut)" in line
