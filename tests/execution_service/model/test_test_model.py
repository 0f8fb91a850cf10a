"""TestModel: calls every tool once with schema-generated arguments, then summarises the results."""

from __future__ import annotations

from typing import Any

import pytest

from execution_service.model.base import (
    FunctionResult,
    ModelRequest,
    ToolDeclaration,
    ToolResultMessage,
    UserMessage,
)
from execution_service.model.schema_examples import example_arguments
from execution_service.model.test_model import TEST_MODEL_INPUT_TOKEN_LIMIT, TestModel

# The shapes mcp-server-time and mcp-server-git publish.
GET_CURRENT_TIME: dict[str, Any] = {
    "type": "object",
    "properties": {
        "timezone": {
            "type": "string",
            "description": "IANA timezone name (e.g., 'America/New_York', 'Europe/London'). Use 'UTC' if none.",
        }
    },
    "required": ["timezone"],
}
CONVERT_TIME: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source_timezone": {"type": "string", "description": "Source IANA timezone name"},
        "time": {"type": "string", "description": "Time to convert in 24-hour format (HH:MM)"},
        "target_timezone": {"type": "string", "description": "Target IANA timezone name"},
    },
    "required": ["source_timezone", "time", "target_timezone"],
}
GIT_LOG: dict[str, Any] = {
    "type": "object",
    "title": "GitLog",
    "properties": {
        "repo_path": {"title": "Repo Path", "type": "string"},
        "max_count": {"default": 10, "title": "Max Count", "type": "integer"},
    },
    "required": ["repo_path"],
}
TOOLS = (
    ToolDeclaration("get_current_time", "Get the current time", GET_CURRENT_TIME),
    ToolDeclaration("convert_time", "Convert a time", CONVERT_TIME),
    ToolDeclaration("git_log", "Show commit logs", GIT_LOG),
)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        (GET_CURRENT_TIME, {"timezone": "Europe/Paris"}),
        (CONVERT_TIME, {"source_timezone": "Europe/Paris", "time": "12:00", "target_timezone": "Europe/Paris"}),
        (GIT_LOG, {"repo_path": "."}),
        ({"type": "object", "properties": {}}, {}),
        ({"type": "object"}, {}),
        (
            {
                "type": "object",
                "properties": {
                    "url": {"type": "string"},
                    "path": {"type": "string"},
                    "count": {"type": "integer", "minimum": 3},
                    "page": {"type": "integer"},
                    "ratio": {"type": "number"},
                    "verbose": {"type": "boolean"},
                    "mode": {"type": "string", "enum": ["fast", "slow"]},
                    "color": {"type": "string", "examples": ["teal"], "default": "red"},
                    "unit": {"type": "string", "default": "celsius"},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "when": {"type": "string", "format": "date-time"},
                    "name": {"type": "string"},
                    "optional": {"type": "string"},
                },
                "required": [
                    "url",
                    "path",
                    "count",
                    "page",
                    "ratio",
                    "verbose",
                    "mode",
                    "color",
                    "unit",
                    "tags",
                    "when",
                    "name",
                ],
            },
            {
                "url": "https://example.com",
                "path": ".",
                "count": 3,
                "page": 1,
                "ratio": 1.0,
                "verbose": True,
                "mode": "fast",
                "color": "teal",
                "unit": "celsius",
                "tags": ["example"],
                "when": "2026-01-01T12:00:00Z",
                "name": "example",
            },
        ),
        (
            {
                "type": "object",
                "$defs": {
                    "Point": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                        "required": ["x", "y"],
                    }
                },
                "properties": {
                    "origin": {"$ref": "#/$defs/Point"},
                    "points": {"type": "array", "items": {"$ref": "#/$defs/Point"}},
                    "limit": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 5}]},
                    "label": {"type": ["string", "null"]},
                    "filters": {
                        "type": "object",
                        "properties": {"owner": {"type": "string"}, "since_date": {"type": "string"}},
                        "required": ["since_date"],
                    },
                },
                "required": ["origin", "points", "limit", "label", "filters"],
            },
            {
                "origin": {"x": 1, "y": 1},
                "points": [{"x": 1, "y": 1}],
                "limit": 5,
                "label": "example",
                "filters": {"since_date": "2026-01-01"},
            },
        ),
    ],
)
def test_argument_generation(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert example_arguments(schema) == expected


def ask(*messages: Any, tools: tuple[ToolDeclaration, ...] = TOOLS) -> ModelRequest:
    return ModelRequest(model="test", messages=messages or (UserMessage("What time is it?"),), tools=tools)


async def test_first_turn_calls_every_tool_once_in_one_turn_then_summarises() -> None:
    model = TestModel()
    first = ask()
    turn = await model.generate(first)

    assert turn.text == ""
    assert turn.finish_reason == "STOP"
    assert [c.name for c in turn.function_calls] == ["get_current_time", "convert_time", "git_log"]
    assert turn.function_calls[0].arguments == {"timezone": "Europe/Paris"}
    assert len({c.id for c in turn.function_calls}) == 3

    results = ToolResultMessage(
        (
            FunctionResult(turn.function_calls[0].id, "get_current_time", {"result": '{"datetime": "x"}'}),
            FunctionResult(turn.function_calls[1].id, "convert_time", {"error": "bad time"}, is_error=True),
            FunctionResult(turn.function_calls[2].id, "git_log", {"result": "commit " + "a" * 500}),
        )
    )
    final = await model.generate(ask(*first.messages, turn.as_message(), results))

    assert final.function_calls == ()
    assert final.finish_reason == "STOP"
    assert final.text == (
        'Called 3 tools: get_current_time -> {"datetime": "x"}; convert_time -> error: bad time; git_log -> commit '
        + "a" * 193
    )


async def test_without_tools_it_echoes_the_task() -> None:
    response = await TestModel().generate(ask(UserMessage("Say hello"), tools=()))
    assert response.text == "Echo: Say hello"
    assert response.function_calls == ()


async def test_options_call_tools_and_final_text() -> None:
    model = TestModel(call_tools=["git_log"], final_text="All done.")
    first = ask()
    turn = await model.generate(first)
    assert [c.name for c in turn.function_calls] == ["git_log"]
    [call] = turn.function_calls
    results = ToolResultMessage((FunctionResult(call.id, call.name, {"result": "log"}),))
    final = await model.generate(ask(*first.messages, turn.as_message(), results))
    assert final.text == "All done."
    assert (await TestModel(call_tools=[]).generate(ask(UserMessage("x")))).text == "Echo: x"


async def test_usage_is_realistic_and_deterministic() -> None:
    first = ask()
    a = await TestModel().generate(first)
    b = await TestModel().generate(first)
    assert a.usage == b.usage
    assert a.usage.input_tokens > 50  # the tool schemas count
    assert a.usage.output_tokens > 0
    assert a.usage.total_tokens == a.usage.input_tokens + a.usage.output_tokens
    echo = await TestModel().generate(ask(UserMessage("x" * 400), tools=()))
    assert echo.usage.input_tokens == 100
    assert echo.usage.output_tokens == len("Echo: " + "x" * 400) // 4 + 1


async def test_latency_sleeps_before_answering() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    model = TestModel(latency_s=0.5, sleep=sleep)
    await model.generate(ask())
    assert slept == [0.5]
    assert model.name == "test"


async def test_it_declares_its_own_input_token_limit() -> None:
    request = ModelRequest(model="test", messages=(UserMessage("What time is it in Oslo?"),))
    assert (await TestModel().generate(request)).input_token_limit == TEST_MODEL_INPUT_TOKEN_LIMIT
    assert (await TestModel(input_token_limit=64).generate(request)).input_token_limit == 64
