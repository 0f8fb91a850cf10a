"""One FakeGemini server for the model tests (it runs in its own thread), reset before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from execution_service.model.gemini import GeminiProvider
from tests.fakes.gemini_server import FakeGemini


@pytest.fixture(scope="session")
def _fake_gemini_server() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def fake_gemini(_fake_gemini_server: FakeGemini) -> Iterator[FakeGemini]:
    _fake_gemini_server.reset()
    yield _fake_gemini_server
    _fake_gemini_server.reset()


@pytest.fixture
async def gemini(fake_gemini: FakeGemini) -> AsyncIterator[GeminiProvider]:
    """A streaming GeminiProvider (real google-genai async client) pointed at the fake."""
    provider = GeminiProvider("test-key", fake_gemini.base_url, timeout_s=10.0)
    yield provider
    await provider.aclose()


@pytest.fixture(params=["stream", "unary"])
async def any_gemini(request: pytest.FixtureRequest, fake_gemini: FakeGemini) -> AsyncIterator[GeminiProvider]:
    """The provider in both modes: streamGenerateContent (SSE) and generateContent."""
    provider = GeminiProvider("test-key", fake_gemini.base_url, stream=request.param == "stream", timeout_s=10.0)
    yield provider
    await provider.aclose()
