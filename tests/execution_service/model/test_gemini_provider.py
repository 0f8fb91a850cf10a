"""GeminiProvider through the real google-genai async client against the local FakeGemini."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import time
from datetime import timedelta
from typing import Any

import pytest
from google.genai import types

from agentrun_core.domain import ErrorReason, TokenUsage
from execution_service.model.base import (
    FunctionResult,
    ModelError,
    ModelMessage,
    ModelRequest,
    ToolDeclaration,
    ToolResultMessage,
    UserMessage,
)
from execution_service.model.gemini import GeminiProvider
from execution_service.model.gemini_convert import (
    GENERATED_CALL_ID_PREFIX,
    ResponseAccumulator,
    merge_usage,
    to_config,
    to_token_usage,
)
from tests.fakes.gemini_server import (
    FakeCandidate,
    FakeError,
    FakeFunctionCall,
    FakeGemini,
    FakeRaw,
    FakeResponse,
    FakeUsage,
    part_field,
)

MODEL = "gemini-2.5-flash"
TIME_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "description": "IANA timezone name, e.g. 'Europe/Paris'"}},
    "required": ["timezone"],
}
TIME_TOOL = ToolDeclaration("get_current_time", "Get the current time in a timezone", TIME_SCHEMA)
ALL_COUNTS = FakeUsage(prompt=1200, candidates=80, total=1400, cached=300, thoughts=90, tool_use_prompt=30)
ALL_COUNTS_MAPPED = TokenUsage(
    input_tokens=1200,
    output_tokens=80,
    total_tokens=1400,
    cached_tokens=300,
    thinking_tokens=90,
    tool_use_prompt_tokens=30,
)


def ask(*messages: Any, tools: tuple[ToolDeclaration, ...] = (), **kwargs: Any) -> ModelRequest:
    return ModelRequest(model=MODEL, messages=messages or (UserMessage("What time is it?"),), tools=tools, **kwargs)


async def test_text_turn(any_gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    provider = any_gemini
    fake_gemini.add(FakeResponse(text="It is noon in Paris.", usage=FakeUsage(prompt=12, candidates=6)))

    response = await provider.generate(ask(system_instruction="Be brief."))

    assert response.text == "It is noon in Paris."
    assert response.function_calls == ()
    assert response.finish_reason == "STOP"
    assert response.blocked_reason is None
    assert response.usage == TokenUsage(input_tokens=12, output_tokens=6, total_tokens=18)
    [sent] = fake_gemini.requests
    assert sent.model == MODEL
    assert sent.version == "v1beta"
    assert sent.stream is provider.stream
    assert sent.contents == [{"role": "user", "parts": [{"text": "What time is it?"}]}]
    assert sent.system_text == "Be brief."


async def test_function_call_turn_maps_all_six_usage_counts(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    provider = any_gemini
    fake_gemini.add(
        FakeResponse(
            function_calls=[
                FakeFunctionCall("get_current_time", {"timezone": "Europe/Paris"}, id="call-1"),
                FakeFunctionCall("get_current_time", {"timezone": "Asia/Tokyo"}, id="call-2"),
            ],
            usage=ALL_COUNTS,
        )
    )

    response = await provider.generate(ask(tools=(TIME_TOOL,)))

    assert [(c.id, c.name, c.arguments) for c in response.function_calls] == [
        ("call-1", "get_current_time", {"timezone": "Europe/Paris"}),
        ("call-2", "get_current_time", {"timezone": "Asia/Tokyo"}),
    ]
    assert response.text == ""
    assert response.usage == ALL_COUNTS_MAPPED


async def test_missing_counts_become_zero(gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeResponse(text="hi", usage=FakeUsage(prompt=5, candidates=1)))
    response = await gemini.generate(ask())
    assert response.usage == TokenUsage(input_tokens=5, output_tokens=1, total_tokens=6)
    fake_gemini.add(FakeResponse(text="hi", usage=None))
    assert (await gemini.generate(ask())).usage == TokenUsage()


async def test_streaming_merges_chunks_and_measures_time_to_first_token(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    text = "The current time in Paris is 12:00, and in Tokyo it is 19:00."
    fake_gemini.add(
        FakeResponse(
            text=text,
            function_calls=[FakeFunctionCall("get_current_time", {"timezone": "UTC"}, id="c1")],
            usage=ALL_COUNTS,
            stream_chunks=4,
            chunk_delay_s=0.05,
        )
    )

    started = time.perf_counter()
    response = await gemini.generate(ask(tools=(TIME_TOOL,)))
    elapsed = timedelta(seconds=time.perf_counter() - started)

    assert response.text == text
    assert [c.name for c in response.function_calls] == ["get_current_time"]
    # Every chunk carried a cumulative usage snapshot: the result is the last one, not a sum.
    assert response.usage == ALL_COUNTS_MAPPED
    assert response.time_to_first_token is not None
    assert timedelta(0) < response.time_to_first_token < elapsed
    # The first chunk came ~4 x 50 ms before the end of the stream.
    assert elapsed - response.time_to_first_token >= timedelta(milliseconds=100)
    # Text pieces are joined into one part in the content echoed back.
    assert response.provider_content is not None
    assert [p.text for p in response.provider_content.parts if p.text] == [text]


async def test_a_missing_total_is_the_sum_of_the_counts_sent(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.add(
        FakeResponse(
            text="hi",
            usage=FakeUsage(prompt=100, candidates=20, cached=30, thoughts=7, tool_use_prompt=3, send_total=False),
        ),
        FakeResponse(text="hi", usage=FakeUsage(prompt=100, send_total=False)),
    )
    # cached tokens are part of the prompt count: not added again.
    assert (await any_gemini.generate(ask())).usage == TokenUsage(
        input_tokens=100,
        output_tokens=20,
        total_tokens=130,
        cached_tokens=30,
        thinking_tokens=7,
        tool_use_prompt_tokens=3,
    )
    assert (await any_gemini.generate(ask())).usage == TokenUsage(input_tokens=100, total_tokens=100)


def test_a_stale_total_is_not_kept_when_the_latest_snapshot_has_none() -> None:
    first = types.GenerateContentResponseUsageMetadata(
        prompt_token_count=100, candidates_token_count=3, total_token_count=103
    )
    last = types.GenerateContentResponseUsageMetadata(candidates_token_count=9)
    merged = merge_usage(first, last)
    assert merged is not None and merged.total_token_count is None
    assert to_token_usage(merged) == TokenUsage(input_tokens=100, output_tokens=9, total_tokens=109)


def test_merge_usage_takes_the_latest_snapshot_per_count() -> None:
    first = types.GenerateContentResponseUsageMetadata(prompt_token_count=100, candidates_token_count=3)
    last = types.GenerateContentResponseUsageMetadata(candidates_token_count=9, total_token_count=109)
    merged = merge_usage(first, last)
    assert merged is not None
    assert (merged.prompt_token_count, merged.candidates_token_count, merged.total_token_count) == (100, 9, 109)
    assert merge_usage(None, last) is last
    assert merge_usage(first, None) is first


async def test_thought_signature_echoed_back_unchanged_and_function_responses_carry_id_and_name(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    provider = any_gemini
    signature = base64.b64encode(b"opaque-thought-signature\x00\xff").decode()
    fake_gemini.add(
        FakeResponse(
            text="Let me check.",
            function_calls=[FakeFunctionCall("get_current_time", {"timezone": "Europe/Paris"}, id="fc-42")],
            thought_signature=signature,
        ),
        FakeResponse(text="It is noon."),
    )
    first = ask(tools=(TIME_TOOL,))
    turn = await provider.generate(first)
    [call] = turn.function_calls
    results = ToolResultMessage((FunctionResult(call.id, call.name, {"result": '{"datetime": "12:00"}'}),))

    second = await provider.generate(ask(*first.messages, turn.as_message(), results, tools=(TIME_TOOL,)))

    assert second.text == "It is noon."
    first_body, second_body = (r.body for r in fake_gemini.requests)
    model_content = second_body["contents"][1]
    assert model_content["role"] == "model"
    signed = [p for p in model_content["parts"] if part_field(p, "thoughtSignature", "thought_signature")]
    assert [part_field(p, "thoughtSignature", "thought_signature") for p in signed] == [signature]
    assert part_field(signed[0], "functionCall", "function_call")["id"] == "fc-42"
    tool_content = second_body["contents"][2]
    assert tool_content["role"] == "user"
    [response_part] = tool_content["parts"]
    function_response = part_field(response_part, "functionResponse", "function_response")
    assert function_response == {
        "id": "fc-42",
        "name": "get_current_time",
        "response": {"result": '{"datetime": "12:00"}'},
    }
    assert first_body["contents"] == second_body["contents"][:1]


async def test_calls_without_ids_get_unique_ids_that_are_not_sent_back(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.add(
        FakeResponse(
            function_calls=[
                FakeFunctionCall("get_current_time", {"timezone": "UTC"}),
                FakeFunctionCall("get_current_time", {"timezone": "UTC"}),
            ]
        ),
        FakeResponse(text="done"),
    )
    first = ask(tools=(TIME_TOOL,))
    turn = await gemini.generate(first)
    ids = [c.id for c in turn.function_calls]
    assert len(set(ids)) == 2
    assert all(i.startswith(GENERATED_CALL_ID_PREFIX) for i in ids)
    results = ToolResultMessage(tuple(FunctionResult(c.id, c.name, {"result": "ok"}) for c in turn.function_calls))

    await gemini.generate(ask(*first.messages, turn.as_message(), results))

    parts = fake_gemini.requests[1].contents[2]["parts"]
    responses = [part_field(p, "functionResponse", "function_response") for p in parts]
    assert [r["name"] for r in responses] == ["get_current_time", "get_current_time"]
    assert all("id" not in r for r in responses)


async def test_model_message_without_provider_content_is_rebuilt(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.add(FakeResponse(text="ok"))
    from execution_service.model.base import FunctionCall

    history = (
        UserMessage("hi"),
        ModelMessage("calling", (FunctionCall("m-1", "get_current_time", {"timezone": "UTC"}),)),
        ToolResultMessage((FunctionResult("m-1", "get_current_time", {"error": "boom"}, is_error=True),)),
    )
    await gemini.generate(ask(*history))
    contents = fake_gemini.requests[0].contents
    assert contents[1]["role"] == "model"
    assert contents[1]["parts"][0] == {"text": "calling"}
    call = part_field(contents[1]["parts"][1], "functionCall", "function_call")
    assert call == {"id": "m-1", "name": "get_current_time", "args": {"timezone": "UTC"}}
    response = part_field(contents[2]["parts"][0], "functionResponse", "function_response")
    assert response == {"id": "m-1", "name": "get_current_time", "response": {"error": "boom"}}


async def test_tools_are_sent_with_their_json_schema_as_is(gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    odd_schema: dict[str, Any] = {
        "type": "object",
        "$defs": {"Mode": {"type": "string", "enum": ["fast", "slow"]}},
        "properties": {
            "mode": {"$ref": "#/$defs/Mode"},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 0},
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None},
        },
        "required": ["mode"],
        "additionalProperties": False,
    }
    tools = (TIME_TOOL, ToolDeclaration("search", "Search things", odd_schema))
    fake_gemini.add(FakeResponse(text="ok"))

    await gemini.generate(ask(tools=tools))

    [sent] = fake_gemini.requests
    assert [d["name"] for d in sent.function_declarations] == ["get_current_time", "search"]
    assert sent.function_declarations[0]["description"] == "Get the current time in a timezone"
    assert sent.declaration_schema("get_current_time") == TIME_SCHEMA
    assert sent.declaration_schema("search") == odd_schema


async def test_generation_config_is_mapped_and_unknown_keys_warned(
    gemini: GeminiProvider, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gemini.add(FakeResponse(text="ok"))
    config = {
        "temperature": 0.3,
        "maxOutputTokens": 256,
        "topP": 0.9,
        "topK": 20,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 0, "includeThoughts": False},
        "mysteryKnob": 7,
    }
    with caplog.at_level(logging.WARNING, logger="execution_service.model.gemini_convert"):
        await gemini.generate(ask(config=config))

    generation = fake_gemini.requests[0].generation_config
    assert generation["temperature"] == 0.3
    assert generation["maxOutputTokens"] == 256
    assert generation["topP"] == 0.9
    assert generation["topK"] == 20
    assert generation["stopSequences"] == ["END"]
    thinking = generation["thinkingConfig"]
    assert (thinking.get("thinkingBudget", thinking.get("thinking_budget"))) == 0
    assert "mysteryKnob" not in generation
    assert any("mysteryKnob" in r.getMessage() for r in caplog.records)


def test_config_disables_automatic_function_calling_and_rejects_bad_values() -> None:
    config = to_config(ask(tools=(TIME_TOOL,)))
    assert config.automatic_function_calling is not None
    assert config.automatic_function_calling.disable is True
    with pytest.raises(ModelError) as caught:
        to_config(ask(config={"temperature": "hot"}))
    assert caught.value.reason == ErrorReason.MODEL_REQUEST_INVALID
    assert not caught.value.retryable


async def test_blocked_prompt(any_gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    provider = any_gemini
    fake_gemini.add(
        FakeResponse(block_reason="SAFETY", block_reason_message="unsafe prompt", usage=FakeUsage(prompt=40))
    )
    response = await provider.generate(ask())
    assert response.blocked_reason == "SAFETY"
    assert response.finish_message == "unsafe prompt"
    assert response.text == ""
    assert response.function_calls == ()
    assert response.usage.input_tokens == 40
    assert not response.no_candidates


async def test_finish_reason_and_message_of_a_candidate_without_content(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.add(
        FakeResponse(
            no_content=True,
            finish_reason="MALFORMED_FUNCTION_CALL",
            finish_message="Malformed function call: get_current_time(timezone=",
            usage=FakeUsage(prompt=12),
        )
    )
    response = await any_gemini.generate(ask(tools=(TIME_TOOL,)))
    assert response.finish_reason == "MALFORMED_FUNCTION_CALL"
    # google-genai 3.6.1 drops finishMessage when it converts a Gemini API response (models._Candidate_from_mldev
    # copies no such field), so it never reaches us. If an SDK upgrade starts passing it, this becomes the message
    # the fake sent (test_candidate_finish_message_is_kept covers our side).
    assert response.finish_message == ""
    assert (response.text, response.function_calls, response.provider_content) == ("", (), None)
    assert not response.no_candidates and response.blocked_reason is None
    assert response.usage == TokenUsage(input_tokens=12, total_tokens=12)


def test_candidate_finish_message_is_kept() -> None:
    accumulator = ResponseAccumulator(model=MODEL)
    accumulator.add(
        types.GenerateContentResponse(
            candidates=[
                types.Candidate(
                    index=0, finish_reason=types.FinishReason.UNEXPECTED_TOOL_CALL, finish_message="no such tool"
                )
            ]
        )
    )
    response = accumulator.build()
    assert (response.finish_reason, response.finish_message) == ("UNEXPECTED_TOOL_CALL", "no such tool")


async def test_an_empty_response_has_no_candidates(fake_gemini: FakeGemini) -> None:
    """Not streamed: an answer with no candidate (streamed, such a reply was cut: test_limits_and_cancellation)."""
    fake_gemini.add(FakeRaw({}))
    any_gemini = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=10.0, stream=False)
    try:
        response = await any_gemini.generate(ask())
    finally:
        await any_gemini.aclose()
    assert response.no_candidates
    assert (response.text, response.function_calls, response.finish_reason) == ("", (), "")
    assert response.blocked_reason is None and response.usage == TokenUsage()


THOUGHTS_ON = {"thinkingConfig": {"includeThoughts": True}}


async def test_thought_parts_are_not_answer_text_and_go_back_with_their_signature(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    signature = base64.b64encode(b"sig-after-thinking").decode()
    fake_gemini.add(
        FakeResponse(
            thought="**Checking the time** I should call the tool.",
            function_calls=[FakeFunctionCall("get_current_time", {"timezone": "UTC"}, id="t1")],
            thought_signature=signature,
            usage=FakeUsage(prompt=10, candidates=5, thoughts=40),
        ),
        FakeResponse(
            thought="Now answer.", text="It is noon UTC.", usage=FakeUsage(prompt=30, candidates=6, thoughts=3)
        ),
    )
    first = ask(tools=(TIME_TOOL,), config=THOUGHTS_ON)
    turn = await any_gemini.generate(first)
    assert turn.text == ""
    assert turn.thoughts == "**Checking the time** I should call the tool."
    assert [c.id for c in turn.function_calls] == ["t1"]
    assert turn.usage.thinking_tokens == 40 and turn.usage.total_tokens == 55
    results = ToolResultMessage((FunctionResult("t1", "get_current_time", {"result": "12:00"}),))
    final = await any_gemini.generate(
        ask(*first.messages, turn.as_message(), results, tools=(TIME_TOOL,), config=THOUGHTS_ON)
    )
    assert (final.text, final.thoughts) == ("It is noon UTC.", "Now answer.")
    thinking = part_field(fake_gemini.requests[0].generation_config, "thinkingConfig", "thinking_config")
    assert part_field(thinking, "includeThoughts", "include_thoughts") is True  # the SDK sends snake_case here

    echoed = fake_gemini.requests[1].contents[1]
    assert echoed["role"] == "model"
    thought, call = echoed["parts"]
    assert thought["thought"] is True and thought["text"] == "**Checking the time** I should call the tool."
    assert part_field(call, "thoughtSignature", "thought_signature") == signature
    assert part_field(call, "functionCall", "function_call")["id"] == "t1"


async def test_without_include_thoughts_nothing_changes(any_gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeResponse(thought="secret plan", text="It is noon.", thought_signature="c2ln"))
    response = await any_gemini.generate(ask(config={"thinkingConfig": {"thinkingBudget": 128}}))
    assert (response.text, response.thoughts) == ("It is noon.", "")
    assert "secret plan" not in repr(response.provider_content)


def test_thoughts_sent_without_being_asked_for_are_not_kept() -> None:
    """A backend that sends thought parts unasked: they are neither answer text nor thoughts."""
    accumulator = ResponseAccumulator(model=MODEL)
    part = types.Part(text="unasked", thought=True)
    accumulator.add(
        types.GenerateContentResponse(
            candidates=[types.Candidate(content=types.Content(role="model", parts=[part, types.Part(text="hi")]))]
        )
    )
    response = accumulator.build()
    assert (response.text, response.thoughts) == ("hi", "")


async def test_the_input_token_limit_is_looked_up_once_per_model(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.models[MODEL] = (2000, 100)
    fake_gemini.add(*[FakeResponse(text="ok", usage=FakeUsage(prompt=500, candidates=1))] * 4)
    first = await any_gemini.generate(ask())
    assert first.input_token_limit == 2000
    rest = await asyncio.gather(*(any_gemini.generate(ask()) for _ in range(3)))
    assert [r.input_token_limit for r in rest] == [2000] * 3
    assert fake_gemini.model_lookups == {MODEL: 1}


async def test_an_unknown_input_token_limit_is_zero_and_never_fails_the_call(
    any_gemini: GeminiProvider, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    del fake_gemini.models[MODEL]  # the API answers 404 for the model's metadata
    fake_gemini.add(FakeResponse(text="ok"), FakeResponse(text="again"))
    with caplog.at_level(logging.WARNING, logger="execution_service.model.gemini"):
        first = await any_gemini.generate(ask())
        second = await any_gemini.generate(ask())
    assert (first.text, first.input_token_limit, second.input_token_limit) == ("ok", 0, 0)
    assert fake_gemini.model_lookups == {MODEL: 1}  # not asked again at every call
    assert [r for r in caplog.records if "input token limit of model" in r.getMessage()]


async def test_only_candidate_zero_is_used(any_gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    fake_gemini.add(
        FakeResponse(text="AB", other_candidates=(FakeCandidate("A2B2", finish_reason="MAX_TOKENS"),), stream_chunks=2),
        FakeResponse(text="CD", other_candidates=(FakeCandidate("C2D2"),), stream_chunks=2, omit_index=True),
    )
    first = await any_gemini.generate(ask())
    assert (first.text, first.finish_reason) == ("AB", "STOP")
    assert first.provider_content is not None and [p.text for p in first.provider_content.parts] == ["AB"]
    # An absent index means 0.
    assert (await any_gemini.generate(ask())).text == "CD"


async def test_candidate_count_other_than_one_is_refused_before_any_request(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    with pytest.raises(ModelError) as caught:
        await gemini.generate(ask(config={"candidateCount": 2}))
    assert caught.value.reason == ErrorReason.MODEL_REQUEST_INVALID and "candidateCount" in caught.value.message
    assert not fake_gemini.requests


async def test_max_tokens_finish_reason_is_surfaced(any_gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    provider = any_gemini
    fake_gemini.add(FakeResponse(text="The answer is cut", finish_reason="MAX_TOKENS"))
    response = await provider.generate(ask())
    assert response.finish_reason == "MAX_TOKENS"
    assert response.text == "The answer is cut"


async def test_responder_answers_function_calls_dynamically(gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    def responder(body: dict[str, Any]) -> FakeResponse:
        last = body["contents"][-1]["parts"]
        responses = [part_field(p, "functionResponse", "function_response") for p in last]
        if any(responses):
            return FakeResponse(text="echo: " + "; ".join(str(r["response"]["result"]) for r in responses if r))
        return FakeResponse(function_calls=[FakeFunctionCall("get_current_time", {"timezone": "UTC"}, id="r1")])

    fake_gemini.set_responder(responder)
    first = ask(tools=(TIME_TOOL,))
    turn = await gemini.generate(first)
    results = ToolResultMessage((FunctionResult("r1", "get_current_time", {"result": "12:00 UTC"}),))
    final = await gemini.generate(ask(*first.messages, turn.as_message(), results, tools=(TIME_TOOL,)))
    assert final.text == "echo: 12:00 UTC"


@pytest.mark.parametrize(
    ("status", "reason", "retryable"),
    [
        (429, ErrorReason.MODEL_RATE_LIMITED, True),
        (500, ErrorReason.MODEL_UNAVAILABLE, True),
        (503, ErrorReason.MODEL_UNAVAILABLE, True),
        (400, ErrorReason.MODEL_REQUEST_INVALID, False),
        (401, ErrorReason.MODEL_AUTH_FAILED, False),
        (403, ErrorReason.MODEL_AUTH_FAILED, False),
    ],
)
async def test_http_errors_map_to_model_errors(
    gemini: GeminiProvider, fake_gemini: FakeGemini, status: int, reason: ErrorReason, retryable: bool
) -> None:
    fake_gemini.add(FakeError(status, f"scripted failure {status}"))
    with pytest.raises(ModelError) as caught:
        await gemini.generate(ask())
    error = caught.value
    assert (error.reason, error.code, error.retryable) == (reason, status, retryable)
    assert error.message == f"scripted failure {status}"
    assert error.describe().startswith(f"{status} ") and error.describe().endswith(f": scripted failure {status}")
    assert error.status
    assert len(fake_gemini.requests) == 1  # the SDK did not retry


async def test_a_bad_api_key_is_model_auth_failed_not_a_bad_request(
    gemini: GeminiProvider, fake_gemini: FakeGemini
) -> None:
    """The Gemini API answers a bad key with 400 INVALID_ARGUMENT and ErrorInfo reason API_KEY_INVALID."""
    fake_gemini.add(
        FakeError(400, "API key not valid. Please pass a valid API key.", error_info_reason="API_KEY_INVALID")
    )
    with pytest.raises(ModelError) as caught:
        await gemini.generate(ask())
    assert (caught.value.reason, caught.value.code, caught.value.retryable) == (
        ErrorReason.MODEL_AUTH_FAILED,
        400,
        False,
    )
    assert caught.value.describe() == "400 INVALID_ARGUMENT: API key not valid. Please pass a valid API key."


async def test_rate_limit_retry_info_becomes_a_delay_hint(gemini: GeminiProvider, fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeError(429, "Resource has been exhausted", retry_delay_s=1.5))
    with pytest.raises(ModelError) as caught:
        await gemini.generate(ask())
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    assert caught.value.retry_after_s == 1.5


async def test_timeout_is_retryable_model_timeout(fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeResponse(text="too late", delay_s=1.5))
    provider = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=0.3)
    try:
        with pytest.raises(ModelError) as caught:
            await provider.generate(ask())
    finally:
        await provider.aclose()
    assert caught.value.reason == ErrorReason.MODEL_TIMEOUT
    assert caught.value.retryable
    # No HTTP status came: the run's error message is the message alone (it read "None: model ... did not answer").
    assert caught.value.describe() == caught.value.message


async def test_a_streamed_reply_may_outlast_the_timeout_while_it_keeps_coming(fake_gemini: FakeGemini) -> None:
    """The timeout bounds each wait for the next chunk of a stream, not the whole reply: a long answer that keeps
    streaming is not cut; one that stalls longer than the timeout is."""
    fake_gemini.add(
        FakeResponse(text="one two three four five six", stream_chunks=6, chunk_delay_s=0.2),
        FakeResponse(text="one two three", stream_chunks=3, chunk_delay_s=0.8),
    )
    provider = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=0.5, stream=True)
    try:
        answer = await provider.generate(ask())  # 1 s in all, never 0.5 s without a chunk
        with pytest.raises(ModelError) as caught:
            await provider.generate(ask())
    finally:
        await provider.aclose()
    assert answer.text == "one two three four five six" and answer.finish_reason == "STOP"
    assert caught.value.reason == ErrorReason.MODEL_TIMEOUT


async def test_connection_refused_is_retryable_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = GeminiProvider("test-key", f"http://127.0.0.1:{port}", timeout_s=5.0)
    try:
        with pytest.raises(ModelError) as caught:
            await provider.generate(ask())
    finally:
        await provider.aclose()
    assert caught.value.reason == ErrorReason.MODEL_UNAVAILABLE
    assert caught.value.retryable
    assert caught.value.describe() == caught.value.message
