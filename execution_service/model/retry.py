"""The single retry layer for model calls: exponential backoff with full jitter around any ModelProvider.

Only `ModelError.retryable` errors are retried. A provider's own delay hint (`ModelError.retry_after_s`, e.g. a
429's RetryInfo) is honoured, capped at `max_delay_s`. After the last attempt the last ModelError is re-raised
unchanged, so the run fails with the provider's code and message.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from execution_service.model.base import ModelError, ModelProvider, ModelRequest, ModelResponse

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Jitter(enum.StrEnum):
    NONE = "none"
    FULL = "full"  # uniform in [0, backoff]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # including the first call
    initial_delay_s: float = 0.5
    max_delay_s: float = 20.0
    multiplier: float = 2.0
    jitter: Jitter = Jitter.FULL

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.initial_delay_s < 0 or self.max_delay_s < 0 or self.multiplier < 1:
            raise ValueError(f"invalid retry policy delays: {self}")

    def backoff_s(self, retry_number: int) -> float:
        """The capped exponential backoff before retry `retry_number` (1 for the first retry), before jitter."""
        return min(self.max_delay_s, self.initial_delay_s * self.multiplier ** (retry_number - 1))

    def delay_s(self, retry_number: int, hint_s: float | None = None, rng: random.Random | None = None) -> float:
        """The delay before retry `retry_number`: the provider's hint when it gave one, else jittered backoff."""
        if hint_s is not None and hint_s >= 0:
            return min(hint_s, self.max_delay_s)
        backoff = self.backoff_s(retry_number)
        if self.jitter is Jitter.FULL:
            return (rng or random).uniform(0.0, backoff)
        return backoff


class RetryingProvider:
    """Wraps a provider; retries its retryable ModelErrors according to a RetryPolicy."""

    def __init__(
        self,
        inner: ModelProvider,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng
        self.name = inner.name

    async def generate(self, request: ModelRequest) -> ModelResponse:
        attempt = 1
        while True:
            try:
                return await self.inner.generate(request)
            except ModelError as error:
                if not error.retryable or attempt >= self.policy.max_attempts:
                    if error.retryable:
                        logger.error(
                            "model %s failed after %d attempts: %s %s",
                            request.model,
                            attempt,
                            error.reason,
                            error.describe(),
                        )
                    raise
                delay = self.policy.delay_s(attempt, error.retry_after_s, self._rng)
                logger.warning(
                    "model %s attempt %d/%d failed with %s %s; retrying in %.3f s%s",
                    request.model,
                    attempt,
                    self.policy.max_attempts,
                    error.reason,
                    error.describe(),
                    delay,
                    " (provider hint)" if error.retry_after_s is not None else "",
                )
                await self._sleep(delay)
                attempt += 1

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
