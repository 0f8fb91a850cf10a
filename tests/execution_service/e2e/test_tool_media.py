"""Images, audio and documents a tool returns reach the model: as inline parts beside the function responses of the
turn that asked for them (Gemini 2.x and 3 alike), summarised in the recorded result, and not sent again with later
turns (which keep the summary)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse
from tests.fixtures.mcp_test_server import PIXEL_PNG
from tests.support.stack import agent_source, running_stack, steps_of

pytestmark = pytest.mark.timeout(180)


def parts_of_last_turn(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list(body["contents"][-1]["parts"])


def inline_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        part.get("inlineData") or part.get("inline_data")
        for content in body["contents"]
        for part in content["parts"]
        if "inlineData" in part or "inline_data" in part
    ]


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "gemini-3-flash-preview"])
async def test_an_image_a_tool_returns_reaches_the_model_once(tmp_path: Path, mode: dict[str, Any], model: str) -> None:
    agents = {"viewer": agent_source(model=model, tools=["test/picture", "test/echo"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("picture", {"label": "a red pixel"}, id="p1")]),
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "seen"}, id="e1")]),
            FakeResponse(text="It is red."),
        )
        events = await stack.execute(agent_name="viewer", task="What colour is the picture?")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED

        # The turn after the call: its function response, then the image, introduced by a line naming the call.
        second = stack.gemini.requests[1]
        parts = parts_of_last_turn(second.body)
        response = second.function_response("p1")
        assert response["name"] == "picture"
        assert "a red pixel" in response["response"]["result"]
        assert "[image image/png 69 bytes, sent to the model]" in response["response"]["result"]
        assert "picture call (p1)" in parts[1]["text"] and "image/png" in parts[1]["text"]
        inline = inline_parts(second.body)
        assert [(i.get("mimeType") or i.get("mime_type")) for i in inline] == ["image/png"]
        assert base64.b64decode(inline[0]["data"]) == PIXEL_PNG

        # Later turns carry the summary only: the image went to the model once.
        third = stack.gemini.requests[2]
        assert inline_parts(third.body) == []
        assert "image/png 69 bytes" in third.function_response("p1")["response"]["result"]

        stored = await stack.stored_run(events[-1].run_finished.run_id)
        (picture,) = [s.tool_result for s in stored.execution_steps if s.WhichOneof("payload") == "tool_result"][:1]
        assert picture.result_text == "a red pixel\n[image image/png 69 bytes, sent to the model]"
        streamed = [s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result"]
        assert streamed[0].result_text == picture.result_text
