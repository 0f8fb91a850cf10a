"""The Gemini provider: one model turn per `generate` call through google-genai's async client.

This is the one place that creates genai clients. The SDK never retries (RetryingProvider is the single retry
layer) and never runs functions itself (automatic function calling is disabled: the agent loop owns tool calls).

Each answer carries the model's input token limit (`ModelResponse.input_token_limit`), from the API's model
metadata (GET models/{model}: inputTokenLimit). It is fetched once per model, alongside the model's first call, and
cached for the provider's lifetime. When it cannot be had (an unknown model, an error, no answer within
LIMIT_LOOKUP_TIMEOUT_S) the limit is 0 ("unknown": the context window share is recorded as 0, the run goes on), and
the lookup is tried again after LIMIT_RETRY_S.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import timedelta

from google import genai
from google.genai import types

from agentrun_core.domain import ErrorReason
from execution_service.model.base import ModelError, ModelRequest, ModelResponse
from execution_service.model.gemini_convert import ResponseAccumulator, asks_for_thoughts, to_config, to_contents
from execution_service.model.gemini_errors import to_model_error
from execution_service.model.guard import check_real_model_allowed, effective_gemini_base_url

logger = logging.getLogger(__name__)

API_VERSION = "v1beta"
LIMIT_LOOKUP_TIMEOUT_S = 10.0
LIMIT_RETRY_S = 300.0


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
        self._input_limits: dict[str, int] = {}
        self._limit_lookups: dict[str, asyncio.Task[int]] = {}
        self._limit_failed_at: dict[str, float] = {}
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
        contents = to_contents(request.messages, model=request.model)
        config = to_config(request, warned=self._warned_config_keys)
        limit = self._input_token_limit(request.model)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:
                if self.stream:
                    response = await self._generate_stream(request.model, contents, config, started, deadline)
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
        if isinstance(limit, asyncio.Task):
            limit = await asyncio.shield(limit)
        return dataclasses.replace(response, input_token_limit=limit) if limit else response

    def _input_token_limit(self, model: str) -> int | asyncio.Task[int]:
        """The model's input token limit when known (0: unknown for now), else the lookup under way."""
        known = self._input_limits.get(model)
        if known is not None:
            return known
        failed_at = self._limit_failed_at.get(model)
        if failed_at is not None and time.monotonic() - failed_at < LIMIT_RETRY_S:
            return 0
        lookup = self._limit_lookups.get(model)
        if lookup is None:
            lookup = asyncio.create_task(self._look_up_limit(model), name=f"gemini-limit:{model}")
            self._limit_lookups[model] = lookup
            lookup.add_done_callback(lambda _: self._limit_lookups.pop(model, None))
        return lookup

    async def _look_up_limit(self, model: str) -> int:
        try:
            async with asyncio.timeout(LIMIT_LOOKUP_TIMEOUT_S):
                info = await self._client.aio.models.get(model=model)
        except Exception as exc:
            self._limit_failed_at[model] = time.monotonic()
            logger.warning(
                "input token limit of model %s unknown (%s: %s); its context window use is recorded as 0 and the "
                "lookup is tried again in %g s",
                model,
                type(exc).__name__,
                exc,
                LIMIT_RETRY_S,
            )
            return 0
        limit = info.input_token_limit or 0
        self._input_limits[model] = limit
        logger.debug("model %s: input token limit %d", model, limit)
        return limit

    async def _generate_once(
        self, model: str, contents: list[types.Content], config: types.GenerateContentConfig
    ) -> ModelResponse:
        result = await self._client.aio.models.generate_content(model=model, contents=contents, config=config)
        accumulator = ResponseAccumulator(model=model, include_thoughts=asks_for_thoughts(config))
        accumulator.add(result)
        return accumulator.build()

    async def _generate_stream(
        self,
        model: str,
        contents: list[types.Content],
        config: types.GenerateContentConfig,
        started: float,
        deadline: asyncio.Timeout,
    ) -> ModelResponse:
        """The streamed reply. `deadline` (timeout_s) bounds the wait for the first chunk and each wait between two:
        a long answer that keeps streaming is not cut, a stalled stream is."""
        accumulator = ResponseAccumulator(model=model, include_thoughts=asks_for_thoughts(config))
        first_token: timedelta | None = None
        loop = asyncio.get_running_loop()
        chunks = await self._client.aio.models.generate_content_stream(model=model, contents=contents, config=config)
        async for chunk in chunks:
            deadline.reschedule(loop.time() + self.timeout_s)
            if accumulator.add(chunk) and first_token is None:
                first_token = timedelta(seconds=time.perf_counter() - started)
        if not accumulator.finish_reason and accumulator.block_reason is None:
            # The API's last chunk carries the finish reason (or the prompt's block reason): a stream that ends
            # without one was cut (a proxy or load balancer closing it cleanly, before or after some content), and
            # what came of its answer may be a truncated one.
            raise ModelError(
                ErrorReason.MODEL_UNAVAILABLE,
                f"the reply stream of model {model} ended after {accumulator.chunks} chunks without a finish "
                "reason: the answer may be cut off",
                retryable=True,
            )
        return accumulator.build(first_token)

    async def aclose(self) -> None:
        for lookup in list(self._limit_lookups.values()):
            lookup.cancel()
        await self._client.aio.aclose()
