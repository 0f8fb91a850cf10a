"""The Gemini provider: one model turn per `generate` call through google-genai's async client.

This is the one place that creates genai clients. The SDK never retries (RetryingProvider is the single retry
layer) and never runs functions itself (automatic function calling is disabled: the agent loop owns tool calls).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import timedelta

from google import genai
from google.genai import types

from agentrun_core.domain import ErrorReason
from execution_service.model.base import ModelError, ModelRequest, ModelResponse
from execution_service.model.gemini_convert import ResponseAccumulator, to_config, to_content
from execution_service.model.gemini_errors import to_model_error
from execution_service.model.guard import check_real_model_allowed, effective_gemini_base_url

logger = logging.getLogger(__name__)

API_VERSION = "v1beta"


class GeminiProvider:
    """ModelProvider for the Gemini API (or any server speaking its REST protocol, such as a local fake)."""

    name = "gemini"

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None = None,
        *,
        stream: bool = True,
        timeout_s: float = 120.0,
    ) -> None:
        self._base_url = base_url
        self.stream = stream
        self.timeout_s = timeout_s
        check_real_model_allowed(effective_gemini_base_url(base_url))
        self._warned_config_keys: set[str] = set()
        http_options = types.HttpOptions(
            base_url=base_url,
            api_version=API_VERSION,
            timeout=max(1, round(timeout_s * 1000)),
            # attempts=1: no SDK retries, and no implicit aiohttp reconnect-and-retry either.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        try:
            self._client = genai.Client(  # noqa: TID251 - the one place that creates genai clients
                api_key=api_key, vertexai=False, http_options=http_options
            )
        except ValueError as exc:
            raise ModelError(
                ErrorReason.MODEL_REQUEST_INVALID,
                f"cannot create the Gemini client: {exc} (set GEMINI_API_KEY or run with model 'test')",
            ) from exc

    @property
    def base_url(self) -> str:
        return effective_gemini_base_url(self._base_url)

    async def generate(self, request: ModelRequest) -> ModelResponse:
        check_real_model_allowed(self.base_url)
        contents = [to_content(message) for message in request.messages]
        config = to_config(request, warned=self._warned_config_keys)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                if self.stream:
                    response = await self._generate_stream(request.model, contents, config, started)
                else:
                    response = await self._generate_once(request.model, contents, config)
        except Exception as exc:
            error = to_model_error(exc, model=request.model, timeout_s=self.timeout_s)
            if error is None:
                logger.exception("unexpected error from model %s (stream=%s)", request.model, self.stream)
                raise
            logger.warning(
                "model %s call failed after %.3f s: %s %s (retryable=%s)",
                request.model,
                time.perf_counter() - started,
                error.reason,
                error.describe(),
                error.retryable,
            )
            if error is exc:
                raise
            raise error from exc
        logger.debug(
            "model %s answered in %.3f s: finish=%s calls=%d usage=%s",
            request.model,
            time.perf_counter() - started,
            response.finish_reason,
            len(response.function_calls),
            response.usage.counts(),
        )
        return response

    async def _generate_once(
        self, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> ModelResponse:
        result = await self._client.aio.models.generate_content(model=model, contents=contents, config=config)
        accumulator = ResponseAccumulator(model=model)
        accumulator.add(result)
        return accumulator.build()

    async def _generate_stream(
        self, model: str, contents: list[types.Content], config: types.GenerateContentConfig, started: float
    ) -> ModelResponse:
        accumulator = ResponseAccumulator(model=model)
        first_token: timedelta | None = None
        chunks = await self._client.aio.models.generate_content_stream(model=model, contents=contents, config=config)
        async for chunk in chunks:
            if accumulator.add(chunk) and first_token is None:
                first_token = timedelta(seconds=time.perf_counter() - started)
        return accumulator.build(first_token)

    async def aclose(self) -> None:
        await self._client.aio.aclose()
