"""The fake itself: usable from sync code too, records requests, answers loudly when unscripted."""

from __future__ import annotations

import json

import httpx2

from tests.fakes.gemini_server import (
    FakeCandidate,
    FakeDelay,
    FakeError,
    FakeFunctionCall,
    FakeGemini,
    FakeRaw,
    FakeResponse,
    FakeUsage,
)


def post(fake: FakeGemini, action: str, body: dict[str, object], query: str = "") -> httpx2.Response:
    url = f"{fake.base_url}/v1beta/models/gemini-2.5-flash:{action}{query}"
    return httpx2.post(url, json=body, timeout=5.0)


def test_sync_clients_work_with_a_fake_in_its_own_thread() -> None:
    with FakeGemini() as fake:
        fake.add(FakeResponse(text="hello", usage=FakeUsage(prompt=3, candidates=1)))
        reply = post(fake, "generateContent", {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
        assert reply.status_code == 200
        body = reply.json()
        assert body["candidates"][0]["content"]["parts"] == [{"text": "hello"}]
        assert body["usageMetadata"] == {"promptTokenCount": 3, "candidatesTokenCount": 1, "totalTokenCount": 4}
        assert fake.requests[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"


def test_stream_chunks_carry_text_pieces_and_cumulative_usage(fake_gemini: FakeGemini) -> None:
    fake_gemini.add(
        FakeResponse(
            text="abcdef",
            function_calls=[FakeFunctionCall("f", {"a": 1}, id="x")],
            usage=FakeUsage(prompt=10, candidates=6),
            stream_chunks=3,
            thought_signature="c2ln",
        )
    )
    reply = post(fake_gemini, "streamGenerateContent", {"contents": []}, "?alt=sse")
    events = [json.loads(line[len("data: ") :]) for line in reply.text.splitlines() if line.startswith("data: ")]
    parts = [event["candidates"][0]["content"]["parts"] for event in events]
    assert parts[:3] == [[{"text": "ab"}], [{"text": "cd"}], [{"text": "ef"}]]
    assert parts[3] == [{"functionCall": {"name": "f", "args": {"a": 1}, "id": "x"}, "thoughtSignature": "c2ln"}]
    assert [e["usageMetadata"]["candidatesTokenCount"] for e in events] == [1, 3, 4, 6]
    assert [e["usageMetadata"]["promptTokenCount"] for e in events] == [10, 10, 10, 10]
    assert [e["candidates"][0].get("finishReason") for e in events] == [None, None, None, "STOP"]


def test_errors_delays_and_an_empty_script(fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeDelay(0.05), FakeError(503, "The model is overloaded.", retry_delay_s=2))
    reply = post(fake_gemini, "generateContent", {})
    assert reply.status_code == 503
    error = reply.json()["error"]
    assert (error["code"], error["message"], error["status"]) == (503, "The model is overloaded.", "UNAVAILABLE")
    assert error["details"][0]["retryDelay"] == "2s"

    unscripted = post(fake_gemini, "generateContent", {})
    assert unscripted.status_code == 400
    assert "no scripted turn left" in unscripted.json()["error"]["message"]
    assert len(fake_gemini.requests) == 2


def sse_events(reply: httpx2.Response) -> list[dict[str, object]]:
    return [json.loads(line[len("data: ") :]) for line in reply.text.splitlines() if line.startswith("data: ")]


def test_thought_parts_finish_message_and_usage_without_a_total(fake_gemini: FakeGemini) -> None:
    turn = FakeResponse(
        text="noon",
        thought="The user wants the time.",
        thought_signature="c2ln",
        finish_message="done",
        usage=FakeUsage(prompt=10, candidates=2, thoughts=5, send_total=False),
    )
    fake_gemini.add(turn, turn)
    asked: dict[str, object] = {"generationConfig": {"thinkingConfig": {"includeThoughts": True}}}
    body = post(fake_gemini, "generateContent", asked).json()
    [candidate] = body["candidates"]
    assert candidate["content"]["parts"] == [
        {"text": "The user wants the time.", "thought": True},
        {"text": "noon", "thoughtSignature": "c2ln"},
    ]
    assert (candidate["finishReason"], candidate["finishMessage"], candidate["index"]) == ("STOP", "done", 0)
    assert body["usageMetadata"] == {"promptTokenCount": 10, "candidatesTokenCount": 2, "thoughtsTokenCount": 5}
    # Not asked: like the real API, no thought summary (the signature still comes).
    [candidate] = post(fake_gemini, "generateContent", {}).json()["candidates"]
    assert candidate["content"]["parts"] == [{"text": "noon", "thoughtSignature": "c2ln"}]


def test_model_metadata_is_served_like_the_api(fake_gemini: FakeGemini) -> None:
    fake_gemini.models["tiny-model"] = (1000, 100)
    info = httpx2.get(f"{fake_gemini.base_url}/v1beta/models/tiny-model", timeout=5.0)
    assert info.status_code == 200
    assert (info.json()["inputTokenLimit"], info.json()["outputTokenLimit"]) == (1000, 100)
    flash = httpx2.get(f"{fake_gemini.base_url}/v1beta/models/gemini-2.5-flash", timeout=5.0).json()
    assert flash["inputTokenLimit"] == 1_048_576
    missing = httpx2.get(f"{fake_gemini.base_url}/v1beta/models/no-such-model", timeout=5.0)
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    assert fake_gemini.model_lookups == {"tiny-model": 1, "gemini-2.5-flash": 1, "no-such-model": 1}


def test_a_candidate_without_content_and_a_blocked_prompt_with_its_message(fake_gemini: FakeGemini) -> None:
    fake_gemini.add(
        FakeResponse(no_content=True, finish_reason="MALFORMED_FUNCTION_CALL", finish_message="bad call"),
        FakeResponse(block_reason="OTHER", block_reason_message="The prompt was blocked."),
    )
    [candidate] = post(fake_gemini, "generateContent", {}).json()["candidates"]
    assert candidate == {"finishReason": "MALFORMED_FUNCTION_CALL", "finishMessage": "bad call", "index": 0}
    blocked = post(fake_gemini, "generateContent", {}).json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"] == {"blockReason": "OTHER", "blockReasonMessage": "The prompt was blocked."}


def test_several_candidates_carry_their_index_and_stream_in_chunks_of_their_own(fake_gemini: FakeGemini) -> None:
    turn = FakeResponse(text="AB", other_candidates=(FakeCandidate("A2B2"),), stream_chunks=2, omit_index=True)
    fake_gemini.add(turn, turn)
    candidates = post(fake_gemini, "generateContent", {}).json()["candidates"]
    assert [(c.get("index"), c["content"]["parts"]) for c in candidates] == [
        (None, [{"text": "AB"}]),
        (1, [{"text": "A2B2"}]),
    ]
    events = sse_events(post(fake_gemini, "streamGenerateContent", {}, "?alt=sse"))
    streamed = [(c.get("index"), c["content"]["parts"], c.get("finishReason")) for e in events for c in e["candidates"]]  # type: ignore[attr-defined]
    assert streamed == [
        (None, [{"text": "A"}], None),
        (1, [{"text": "A2"}], None),
        (None, [{"text": "B"}], "STOP"),
        (1, [{"text": "B2"}], "STOP"),
    ]


def test_raw_bodies_are_sent_verbatim(fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeRaw({}), FakeRaw(chunks=({"candidates": [{"index": 0}]}, {})))
    reply = post(fake_gemini, "generateContent", {})
    assert (reply.status_code, reply.json()) == (200, {})
    assert sse_events(post(fake_gemini, "streamGenerateContent", {}, "?alt=sse")) == [
        {"candidates": [{"index": 0}]},
        {},
    ]
