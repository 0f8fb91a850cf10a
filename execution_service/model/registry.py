"""Chooses the provider for a model name: TestModel for "test", Gemini otherwise; always behind RetryingProvider.

Creating a genai client costs ~40 ms of CPU (TLS context, HTTP client), so Gemini providers are shared: one per
settings per event loop (the SDK's async HTTP connections belong to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field

from agentrun_core.domain import ErrorReason
from execution_service.model.base import ModelError, ModelProvider, ProviderNotConfigured
from execution_service.model.gemini import GeminiProvider
from execution_service.model.names import model_name_problem
from execution_service.model.retry import ModelRetryPolicy, RetryingProvider
from execution_service.model.test_model import TestModel

logger = logging.getLogger(__name__)

TEST_MODEL_NAMES = frozenset({"test", "test-model"})
MODEL_PREFIX = "googleai/"
API_KEY_ENVS = ("GEMINI_API_KEY", "GOOGLE_API_KEY")


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """How models are reached; built from ExecutionSettings (execution_service.server.model_settings)."""

    gemini_api_key: str | None = field(default=None, repr=False)
    gemini_base_url: str | None = None
    stream: bool = True
    timeout_s: float = 120.0
    retry: ModelRetryPolicy = field(default_factory=ModelRetryPolicy)
    test_model_latency_s: float = 0.0


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
    if (problem := model_name_problem(bare)) is not None:
        raise ModelError(ErrorReason.MODEL_REQUEST_INVALID, problem)
    inner: ModelProvider
    if bare in TEST_MODEL_NAMES:
        inner = TestModel(latency_s=settings.test_model_latency_s)
    else:
        if not settings.gemini_api_key:
            raise ProviderNotConfigured("GEMINI_API_KEY is not set: set it or run with model 'test'")
        inner = _gemini_provider(settings)
    logger.debug("model %r -> provider %s", bare, inner.name)
    return RetryingProvider(inner, settings.retry), bare
