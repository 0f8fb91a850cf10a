"""What the model receives from a tool result: cut to a byte limit on a character boundary, with a marker."""

from __future__ import annotations

import json

from agentrun_core.domain import ErrorReason, ToolCallStatus
from execution_service.engine.tool_calls import cut_for_model, response_for_model, utf8_size
from execution_service.tools.base import ToolOutcome


def test_a_result_that_fits_is_sent_as_is() -> None:
    assert cut_for_model("hello", 5, 5) == "hello"
    assert response_for_model(ToolOutcome("hello"), 5, 5) == {"result": "hello"}


def test_the_cut_never_splits_a_character() -> None:
    text = "é" * 10  # 2 bytes each
    cut = cut_for_model(text, 5, utf8_size(text))
    head, marker = cut.split("\n", 1)
    assert head == "éé"  # 4 bytes: a fifth byte would be half a character
    assert marker == "[agentrun cut this tool result here: it is 20 bytes long and only the first 4 are shown " + (
        "(limits.tool_result_bytes)]"
    )


def test_structured_content_too_large_falls_back_to_the_cut_text() -> None:
    rows = [{"n": i} for i in range(100)]
    structured = json.dumps({"rows": rows})
    small = ToolOutcome(text="100 rows", structured_json=structured)
    assert response_for_model(small, 10_000, 8) == {"result": {"rows": rows}}
    text = "row\n" * 100
    big = ToolOutcome(text=text, structured_json=structured)
    response = response_for_model(big, 300, utf8_size(text))
    assert isinstance(response["result"], str) and response["result"].startswith("row\nrow\n")
    assert "only the first 300 are shown" in response["result"]


def test_errors_are_cut_too() -> None:
    error = ToolOutcome("x" * 1000, is_error=True, status=ToolCallStatus.FAILED, error_reason=ErrorReason.TOOL_ERROR)
    response = response_for_model(error, 256, 1000)
    assert list(response) == ["error"] and str(response["error"]).startswith("x" * 256 + "\n[agentrun cut")


def test_utf8_size() -> None:
    assert (utf8_size("abc"), utf8_size("é☃"), utf8_size("")) == (3, 5, 0)
