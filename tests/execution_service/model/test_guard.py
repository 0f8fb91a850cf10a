"""AGENTRUN_FORBID_REAL_MODEL=1 (set by tests/conftest.py): no provider may reach a real model."""

from __future__ import annotations

import os

import pytest

from agentrun_core.domain import ErrorReason
from execution_service.model.base import ModelError, ModelRequest, UserMessage
from execution_service.model.gemini import GeminiProvider
from execution_service.model.guard import FORBID_ENV, is_loopback_http_url
from execution_service.model.registry import ModelSettings, build_provider

REQUEST = ModelRequest(model="gemini-2.5-flash", messages=(UserMessage("hi"),))


def test_the_test_suite_runs_with_the_guard_on() -> None:
    assert os.environ.get(FORBID_ENV) == "1"


@pytest.mark.parametrize("base_url", [None, "https://generativelanguage.googleapis.com", "http://10.1.2.3:8080"])
def test_provider_without_a_local_base_url_fails_loudly(base_url: str | None) -> None:
    with pytest.raises(ModelError) as caught:
        GeminiProvider("a-real-looking-key", base_url)
    assert caught.value.reason == ErrorReason.MODEL_REQUEST_INVALID
    assert not caught.value.retryable
    assert "real model calls are forbidden in tests (AGENTRUN_FORBID_REAL_MODEL=1)" in caught.value.message


def test_base_url_from_the_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "https://example.com")
    with pytest.raises(ModelError, match="forbidden"):
        GeminiProvider("key")


def test_registry_refuses_real_gemini_under_the_guard() -> None:
    with pytest.raises(ModelError, match="forbidden"):
        build_provider("googleai/gemini-2.5-flash", ModelSettings(gemini_api_key="key"))


async def test_generate_checks_again_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORBID_ENV)
    provider = GeminiProvider("key")  # allowed to construct: the guard is off
    monkeypatch.setenv(FORBID_ENV, "1")
    try:
        # Had a request been made, the test's network guard would have raised NetworkAccessError instead.
        with pytest.raises(ModelError, match="forbidden"):
            await provider.generate(REQUEST)
    finally:
        await provider.aclose()


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("http://127.0.0.1:8080", True),
        ("http://127.5.0.1", True),
        ("http://localhost:1234/", True),
        ("http://[::1]:9000", True),
        ("https://127.0.0.1:443", False),
        ("http://localhost.example.com", False),
        ("http://192.168.1.10", False),
        ("generativelanguage.googleapis.com", False),
    ],
)
def test_loopback_detection(url: str, local: bool) -> None:
    assert is_loopback_http_url(url) is local
