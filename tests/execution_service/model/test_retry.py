"""RetryingProvider: the single retry layer, against the fake through the real client and with a stub provider."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator

import pytest

from agentrun_core.backoff import Backoff
from agentrun_core.domain import ErrorReason, TokenUsage
from execution_service.model.base import ModelError, ModelRequest, ModelResponse, UserMessage
from execution_service.model.gemini import GeminiProvider
from execution_service.model.retry import ModelRetryPolicy, RetryingProvider
from tests.fakes.gemini_server import FakeError, FakeGemini, FakeResponse

TINY = ModelRetryPolicy(max_attempts=4, backoff=Backoff(initial_s=0.001, max_s=0.01))
REQUEST = ModelRequest(model="gemini-2.5-flash", messages=(UserMessage("hi"),))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def retrying(fake_gemini: FakeGemini) -> AsyncIterator[RetryingProvider]:
    inner = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=10.0)
    yield RetryingProvider(inner, TINY)
    await inner.aclose()


async def test_rate_limited_twice_then_success(
    retrying: RetryingProvider, fake_gemini: FakeGemini, caplog: pytest.LogCaptureFixture
) -> None:
    fake_gemini.add(
        FakeError(429, "Resource has been exhausted (e.g. check quota)."),
        FakeError(429, "Resource has been exhausted (e.g. check quota)."),
        FakeResponse(text="finally"),
    )
    with caplog.at_level(logging.WARNING, logger="execution_service.model.retry"):
        response = await retrying.generate(REQUEST)
    assert response.text == "finally"
    assert len(fake_gemini.requests) == 3
    retries = [r.getMessage() for r in caplog.records if "retrying in" in r.getMessage()]
    assert len(retries) == 2
    assert "attempt 1/4" in retries[0] and "MODEL_RATE_LIMITED" in retries[0] and "429" in retries[0]
    assert "attempt 2/4" in retries[1]


async def test_server_error_forever_fails_with_the_providers_code_and_message(
    retrying: RetryingProvider, fake_gemini: FakeGemini
) -> None:
    fake_gemini.add(*[FakeError(500, "An internal error has occurred.")] * 6)
    with pytest.raises(ModelError) as caught:
        await retrying.generate(REQUEST)
    error = caught.value
    assert (error.reason, error.code, error.status) == (ErrorReason.MODEL_UNAVAILABLE, 500, "INTERNAL")
    assert error.message == "An internal error has occurred."
    assert len(fake_gemini.requests) == TINY.max_attempts


async def test_invalid_request_is_not_retried(retrying: RetryingProvider, fake_gemini: FakeGemini) -> None:
    fake_gemini.add(FakeError(400, "Invalid JSON payload received."), FakeResponse(text="never"))
    with pytest.raises(ModelError) as caught:
        await retrying.generate(REQUEST)
    assert (caught.value.reason, caught.value.code) == (ErrorReason.MODEL_REQUEST_INVALID, 400)
    assert not caught.value.retryable
    assert len(fake_gemini.requests) == 1


async def test_retry_info_hint_is_honoured_up_to_a_minute(fake_gemini: FakeGemini) -> None:
    """A per-minute quota's RetryInfo is waited for in full, beyond the backoff's own cap (a shorter wait would only
    be refused again)."""
    sleeps = Sleeps()
    inner = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=10.0)
    provider = RetryingProvider(inner, ModelRetryPolicy(max_attempts=3, backoff=Backoff(max_s=5.0)), sleep=sleeps)
    fake_gemini.add(
        FakeError(429, "slow down", retry_delay_s=2.5),
        FakeError(429, "slow down", retry_delay_s=60, quota_id="GenerateRequestsPerMinutePerProjectPerModel"),
        FakeResponse(text="ok"),
    )
    try:
        assert (await provider.generate(REQUEST)).text == "ok"
    finally:
        await inner.aclose()
    assert sleeps.delays == [2.5, 60.0]


@pytest.mark.parametrize(
    ("retry_delay_s", "quota_id"),
    [
        (61.0, None),  # longer than a call waits
        (47.0, "GenerateRequestsPerDayPerProjectPerModel-FreeTier"),  # a day's quota: no retry today helps
    ],
)
async def test_a_spent_quota_fails_the_call_at_once(
    fake_gemini: FakeGemini, retry_delay_s: float, quota_id: str | None
) -> None:
    sleeps = Sleeps()
    inner = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=10.0)
    provider = RetryingProvider(inner, ModelRetryPolicy(max_attempts=4), sleep=sleeps)
    fake_gemini.add(
        FakeError(429, "Quota exceeded", retry_delay_s=retry_delay_s, quota_id=quota_id), FakeResponse(text="never")
    )
    try:
        with pytest.raises(ModelError) as caught:
            await provider.generate(REQUEST)
    finally:
        await inner.aclose()
    assert caught.value.reason == ErrorReason.MODEL_RATE_LIMITED
    assert caught.value.message == "Quota exceeded"
    assert len(caught.value.attempts) == 1
    assert sleeps.delays == []
    assert len(fake_gemini.requests) == 1


class Flaky:
    name = "flaky"

    def __init__(self, errors: list[ModelError]) -> None:
        self.errors = errors
        self.calls = 0

    async def generate(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return ModelResponse(request.model, "ok", (), TokenUsage(), "STOP")


async def test_backoff_is_exponential_capped_and_fully_jittered() -> None:
    unavailable = ModelError(ErrorReason.MODEL_UNAVAILABLE, "down", code=503, retryable=True)
    sleeps = Sleeps()
    policy = ModelRetryPolicy(max_attempts=6, backoff=Backoff(initial_s=0.5, max_s=3.0, multiplier=2.0))
    provider = RetryingProvider(Flaky([unavailable] * 5), policy, sleep=sleeps, rng=random.Random(7))
    assert (await provider.generate(REQUEST)).text == "ok"
    caps = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(sleeps.delays) == 5
    assert all(0 <= d <= cap for d, cap in zip(sleeps.delays, caps, strict=True))
    assert len(set(sleeps.delays)) == 5  # jittered: no two waits alike
    assert [policy.backoff.ceiling_s(n) for n in range(1, 6)] == caps

    no_jitter = Backoff(initial_s=0.5, multiplier=2.0, jitter=0.0)
    assert [no_jitter.delay_s(n) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert no_jitter.delay_s(1, hint_s=0.1) == 0.5  # a hint is a floor, not a replacement
    assert no_jitter.delay_s(1, hint_s=100.0) == 30.0  # ... capped at max_s


async def test_last_error_is_reraised_unchanged() -> None:
    errors = [ModelError(ErrorReason.MODEL_TIMEOUT, f"timeout {i}", retryable=True) for i in range(3)]
    last = errors[-1]
    flaky = Flaky(list(errors))
    provider = RetryingProvider(flaky, ModelRetryPolicy(max_attempts=3), sleep=Sleeps())
    with pytest.raises(ModelError) as caught:
        await provider.generate(REQUEST)
    assert caught.value is last
    assert flaky.calls == 3
    assert provider.name == "flaky"


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        ModelRetryPolicy(max_attempts=0)
    assert ModelRetryPolicy() == ModelRetryPolicy(4, Backoff(initial_s=0.5, multiplier=2.0, max_s=20.0, jitter=1.0))
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)
