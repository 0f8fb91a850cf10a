from __future__ import annotations

import pytest

from agentrun_core.domain import ErrorReason
from agentrun_core.settings import SettingsError
from execution_service.model.base import ModelError, ModelRequest, UserMessage
from execution_service.model.gemini import GeminiProvider
from execution_service.model.registry import ModelSettings, build_provider
from execution_service.model.retry import ModelRetryPolicy, RetryingProvider
from execution_service.model.test_model import TestModel
from tests.fakes.gemini_server import FakeGemini, FakeResponse


@pytest.mark.parametrize("name", ["test", "test-model", "googleai/test"])
def test_test_model(name: str) -> None:
    provider, model = build_provider(name, ModelSettings(test_model_latency_s=0.25))
    assert isinstance(provider, RetryingProvider)
    assert isinstance(provider.inner, TestModel)
    assert provider.inner.latency_s == 0.25
    assert provider.name == "test"
    assert model == name.removeprefix("googleai/")


async def test_gemini_behind_retries_against_the_fake(fake_gemini: FakeGemini) -> None:
    policy = ModelRetryPolicy(max_attempts=2)
    settings = ModelSettings(gemini_api_key="k", gemini_base_url=fake_gemini.base_url, retry=policy, stream=False)
    provider, model = build_provider("googleai/gemini-2.5-flash", settings)
    assert model == "gemini-2.5-flash"
    assert isinstance(provider, RetryingProvider)
    assert isinstance(provider.inner, GeminiProvider)
    assert provider.policy is policy
    again, _ = build_provider("gemini-2.5-pro", settings)
    assert isinstance(again, RetryingProvider)
    assert again.inner is provider.inner  # one genai client per settings per event loop
    fake_gemini.add(FakeResponse(text="hi"))
    response = await provider.generate(ModelRequest(model=model, messages=(UserMessage("hi"),)))
    assert response.text == "hi"
    assert fake_gemini.requests[0].model == "gemini-2.5-flash"
    await provider.aclose()


def test_missing_api_key() -> None:
    with pytest.raises(ModelError) as caught:
        build_provider("gemini-2.5-flash", ModelSettings())
    assert caught.value.reason == ErrorReason.MODEL_REQUEST_INVALID
    assert caught.value.message == "GEMINI_API_KEY is not set: set it or run with model 'test'"
    assert not caught.value.retryable


def test_settings_from_env() -> None:
    """The model settings come from ExecutionSettings' environment variables."""
    from execution_service.config import ExecutionSettings
    from execution_service.server import model_settings

    def from_env(environ: dict[str, str]) -> ModelSettings:
        return model_settings(ExecutionSettings.from_env(environ))

    settings = from_env(
        {
            "GOOGLE_API_KEY": "g-key",
            "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9999",
            "AGENTRUN_MODEL_STREAM": "false",
            "AGENTRUN_MODEL_TIMEOUT_S": "30",
            "AGENTRUN_MODEL_MAX_ATTEMPTS": "2",
            "AGENTRUN_TEST_MODEL_LATENCY_S": "0.5",
        }
    )
    assert settings.gemini_api_key == "g-key"
    assert settings.gemini_base_url == "http://127.0.0.1:9999"
    assert settings.stream is False
    assert settings.timeout_s == 30.0
    assert settings.retry.max_attempts == 2
    assert settings.test_model_latency_s == 0.5
    assert "g-key" not in repr(settings)
    assert from_env({"GEMINI_API_KEY": "a", "GOOGLE_API_KEY": "b"}).gemini_api_key == "a"
    assert from_env({"GEMINI_API_KEY": "", "GOOGLE_API_KEY": "b"}).gemini_api_key == "b"
    assert from_env({}).gemini_api_key is None and from_env({}).timeout_s == ModelSettings().timeout_s
    with pytest.raises(SettingsError, match="AGENTRUN_MODEL_TIMEOUT_S must be a number, got 'soon'"):
        from_env({"AGENTRUN_MODEL_TIMEOUT_S": "soon"})
