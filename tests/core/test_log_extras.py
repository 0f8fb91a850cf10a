"""No log call names an `extra` field that a LogRecord already has: logging raises KeyError for it ("Attempt to
overwrite 'thread' in LogRecord"), so the log line is lost and the code that logged fails with it (a durable queue
poller that was slow to stop crashed the replica's shutdown this way)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("agentrun_core", "agentrun_cli", "agentrun_web", "execution_service", "runs_service", "bench")
RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def test_no_log_call_overwrites_a_log_record_field() -> None:
    clashes = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                for keyword in node.keywords:
                    if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                        clashes += [
                            f"{path.relative_to(REPO)}:{node.lineno}: {key.value}"
                            for key in keyword.value.keys
                            if isinstance(key, ast.Constant) and key.value in RESERVED
                        ]
    assert not clashes, clashes
