"""StepRecorder: a truncated result keeps the size the tool returned."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from agentrun_core.domain import ExecutionStep, ToolCallFinished
from execution_service.engine.recorder import StepRecorder
from execution_service.engine.redaction import RedactionRules, Redactor
from execution_service.tools.base import ToolOutcome

NOW = datetime.now(UTC)


def _recorder(**rules: int) -> tuple[StepRecorder, list[ExecutionStep]]:
    emitted: list[ExecutionStep] = []
    return StepRecorder("r1", emitted.append, Redactor(RedactionRules(**rules))), emitted  # type: ignore[arg-type]


def test_a_truncated_result_reports_the_size_the_tool_returned() -> None:
    recorder, _ = _recorder(max_result_bytes=256)
    # Pretty-printed JSON with a secret: scrubbing re-serialises it compactly, which is much smaller.
    original = json.dumps({"password": "p" * 50, "rows": ["x" * 40] * 20}, indent=8)
    recorder.tool_finished("c1", "vault", ToolOutcome(text=original), time=NOW, duration=timedelta(0))
    finished = recorder.steps[-1].payload
    assert isinstance(finished, ToolCallFinished)
    assert finished.truncated
    assert finished.original_size_bytes == len(original.encode())
    assert f"[truncated: {len(original.encode())} bytes in all, 256 kept]" in finished.result_text
    assert "p" * 50 not in finished.result_text


def test_a_result_under_the_cap_keeps_its_text_and_original_size() -> None:
    recorder, _ = _recorder()
    original = json.dumps({"rows": [1, 2, 3], "token_count": 3}, indent=2)
    recorder.tool_finished("c1", "vault", ToolOutcome(text=original), time=NOW, duration=timedelta(0))
    finished = recorder.steps[-1].payload
    assert isinstance(finished, ToolCallFinished)
    assert finished.result_text == original  # nothing secret: not re-serialised
    assert finished.original_size_bytes == len(original.encode()) and not finished.truncated
