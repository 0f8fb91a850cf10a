"""Chooses the provider for a model name: TestModel for "test", Gemini otherwise; always behind RetryingProvider.

Creating a genai client costs ~40 ms of CPU (TLS context, HTTP client), so Gemini providers are shared: one per
settings per event loop (the SDK's async HTTP connections belong to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field

from agentrun_core.domain import ErrorReason
from agentrun_core.settings import SettingsError
from execution_service.model.base import ModelError, ModelProvider, ProviderNotConfigured
from execution_service.model.gemini import GeminiProvider
from execution_service.model.guard import GEMINI_BASE_URL_ENV
from execution_service.model.retry import ModelRetryPolicy, RetryingProvider
from execution_service.model.test_model import TestModel

logger = logging.getLogger(__name__)

TEST_MODEL_NAMES = frozenset({"test", "test-model"})
MODEL_PREFIX = "googleai/"
API_KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise SettingsError(f"{name} must be at least 0, got {value}")
    return value


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _positive(value: float, name: str) -> float:
    if value <= 0:
        raise SettingsError(f"{name} must be greater than 0, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class ModelSettings:
    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None
    stream: bool = True
    timeout_s: float = 120.0
    retry: ModelRetryPolicy = field(default_factory=ModelRetryPolicy)
    test_model_latency_s: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ModelSettings:
        """GEMINI_API_KEY / GOOGLE_API_KEY, GOOGLE_GEMINI_BASE_URL, AGENTRUN_MODEL_STREAM, AGENTRUN_MODEL_TIMEOUT_S,
        AGENTRUN_MODEL_MAX_ATTEMPTS, AGENTRUN_TEST_MODEL_LATENCY_S."""
        env = os.environ if env is None else env
        api_key = next((env[name] for name in API_KEY_ENVS if env.get(name)), None)
        attempts_raw = env.get("AGENTRUN_MODEL_MAX_ATTEMPTS", "")
        try:
            attempts = int(attempts_raw) if attempts_raw else ModelRetryPolicy().max_attempts
        except ValueError:
            raise SettingsError(f"AGENTRUN_MODEL_MAX_ATTEMPTS must be an integer, got {attempts_raw!r}") from None
        if attempts < 1:
            raise SettingsError(f"AGENTRUN_MODEL_MAX_ATTEMPTS must be at least 1, got {attempts}")
        return cls(
            gemini_api_key=api_key,
            gemini_base_url=env.get(GEMINI_BASE_URL_ENV) or None,
            stream=_env_bool(env, "AGENTRUN_MODEL_STREAM", True),
            timeout_s=_positive(_env_float(env, "AGENTRUN_MODEL_TIMEOUT_S", 120.0), "AGENTRUN_MODEL_TIMEOUT_S"),
            retry=ModelRetryPolicy(max_attempts=attempts),
            test_model_latency_s=_env_float(env, "AGENTRUN_TEST_MODEL_LATENCY_S", 0.0),
        )


def bare_model_name(model_name: str) -> str:
    return model_name.strip().removeprefix(MODEL_PREFIX)


_GeminiKey = tuple[str | None, str | None, bool, float]
_gemini_providers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_GeminiKey, GeminiProvider]] = (
    weakref.WeakKeyDictionary()
)


def _gemini_provider(settings: ModelSettings) -> GeminiProvider:
    key: _GeminiKey = (settings.gemini_api_key, settings.gemini_base_url, settings.stream, settings.timeout_s)
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    cache = _gemini_providers.setdefault(loop, {}) if loop is not None else {}
    provider = cache.get(key)
    if provider is None:
        provider = GeminiProvider(
            settings.gemini_api_key, settings.gemini_base_url, stream=settings.stream, timeout_s=settings.timeout_s
        )
        cache[key] = provider
    return provider


def build_provider(model_name: str, settings: ModelSettings) -> tuple[ModelProvider, str]:
    """The provider for `model_name` (wrapped in RetryingProvider) and the bare model name to send it."""
    bare = bare_model_name(model_name)
    if not bare:
        raise ModelError(ErrorReason.MODEL_REQUEST_INVALID, "no model name given")
    inner: ModelProvider
    if bare in TEST_MODEL_NAMES:
        inner = TestModel(latency_s=settings.test_model_latency_s)
    else:
        if not settings.gemini_api_key:
            raise ProviderNotConfigured("GEMINI_API_KEY is not set: set it or run with model 'test'")
        inner = _gemini_provider(settings)
    logger.debug("model %r -> provider %s", bare, inner.name)
    return RetryingProvider(inner, settings.retry), bare
