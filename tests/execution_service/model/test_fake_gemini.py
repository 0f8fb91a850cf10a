"""The fake itself: usable from sync code too, records requests, answers loudly when unscripted."""

from __future__ import annotations

import json

import httpx2

from tests.fakes.gemini_server import FakeDelay, FakeError, FakeFunctionCall, FakeGemini, FakeResponse, FakeUsage


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
