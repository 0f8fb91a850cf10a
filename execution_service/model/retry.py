"""The single retry layer for model calls: exponential backoff with full jitter around any ModelProvider.

Only `ModelError.retryable` errors are retried. The delays come from the project's one backoff formula
(agentrun_core.backoff): a provider's own delay hint (`ModelError.retry_after_s`, e.g. a 429's RetryInfo) is a floor,
capped at the backoff's `max_s`. After the last attempt the last ModelError is re-raised unchanged, so the run fails
with the provider's code and message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from agentrun_core.backoff import Backoff
from agentrun_core.domain import ModelAttempt
from execution_service.model.base import ModelError, ModelProvider, ModelRequest, ModelResponse

logger = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ModelRetryPolicy:
    """How often a model call is attempted (the first call included) and how long it waits between attempts."""

    max_attempts: int = 4
    backoff: Backoff = field(default_factory=lambda: Backoff(initial_s=0.5, multiplier=2.0, max_s=20.0, jitter=1.0))

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")


class RetryingProvider:
    """Wraps a provider; retries its retryable ModelErrors according to a ModelRetryPolicy."""

    def __init__(
        self,
        inner: ModelProvider,
        policy: ModelRetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.inner = inner
        self.policy = policy or ModelRetryPolicy()
        self._sleep = sleep
        self._random = rng.random if rng is not None else None
        self.name = inner.name

    async def generate(self, request: ModelRequest) -> ModelResponse:
        """The inner provider's answer, with the attempts that failed before it (`ModelResponse.failed_attempts`).
        When the call fails for good, the ModelError raised carries every attempt (`ModelError.attempts`)."""
        failed: list[ModelAttempt] = []
        attempt = 1
        while True:
            started, clock = datetime.now(UTC), time.perf_counter()
            try:
                response = await self.inner.generate(request)
            except ModelError as error:
                took = timedelta(seconds=time.perf_counter() - clock)
                if not error.retryable or attempt >= self.policy.max_attempts:
                    if error.retryable:
                        logger.error(
                            "model %s failed after %d attempts: %s %s",
                            request.model,
                            attempt,
                            error.reason,
                            error.describe(),
                        )
                    failed.append(_attempt(attempt, error, started, took, None))
                    error.attempts = tuple(failed)
                    raise
                delay = self._delay_s(attempt, error.retry_after_s)
                failed.append(_attempt(attempt, error, started, took, delay))
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
                continue
            return dataclasses.replace(response, failed_attempts=tuple(failed)) if failed else response

    def _delay_s(self, attempt: int, hint_s: float | None) -> float:
        backoff = self.policy.backoff
        if self._random is not None:
            backoff = dataclasses.replace(backoff, random=self._random)
        return backoff.delay_s(attempt, hint_s)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def _attempt(number: int, error: ModelError, started: datetime, took: timedelta, delay_s: float | None) -> ModelAttempt:
    return ModelAttempt(
        attempt=number,
        reason=str(error.reason),
        message=error.message,
        start_time=started,
        duration=took,
        code=error.code or 0,
        status=error.status,
        wait_before_next=None if delay_s is None else timedelta(seconds=delay_s),
    )
