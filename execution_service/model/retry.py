"""The single retry layer for model calls: exponential backoff with full jitter around any ModelProvider.

Only `ModelError.retryable` errors are retried. The delays come from the project's one backoff formula
(agentrun_core.backoff). A provider's own delay hint (`ModelError.retry_after_s`, a 429's RetryInfo) is honoured as a
floor, beyond the backoff's cap, up to `max_hint_s` (60 s, a per-minute quota's reset, as the OpenAI and Anthropic
SDKs do); a longer hint ends the retries at once: an earlier attempt would only be refused again. After the last
attempt the last ModelError is re-raised unchanged, so the run fails with the provider's code and message.
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
    # The longest wait a provider may ask for between attempts; a longer one is not waited for: the call fails.
    max_hint_s: float = 60.0

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
                if self._gives_up(request, error, attempt):
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

    def _gives_up(self, request: ModelRequest, error: ModelError, attempt: int) -> bool:
        """Whether `error` ends the call: not retryable, the last attempt, or a provider asking for a longer wait
        than the backoff's cap (logged: the run fails with that error)."""
        if not error.retryable:
            return True
        hint_s, max_s = error.retry_after_s, self.policy.max_hint_s
        if hint_s is not None and hint_s > max_s:
            logger.error(
                "model %s: the provider asks to wait %.1f s before a retry, over the %.1f s a call waits: not "
                "retried: %s %s",
                request.model,
                hint_s,
                max_s,
                error.reason,
                error.describe(),
            )
            return True
        if attempt >= self.policy.max_attempts:
            logger.error(
                "model %s failed after %d attempts: %s %s", request.model, attempt, error.reason, error.describe()
            )
            return True
        return False

    def _delay_s(self, attempt: int, hint_s: float | None) -> float:
        """The backoff's delay, or the provider's hint when longer (within max_hint_s: see _gives_up)."""
        backoff = self.policy.backoff
        if self._random is not None:
            backoff = dataclasses.replace(backoff, random=self._random)
        delay = backoff.delay_s(attempt)
        return delay if hint_s is None or hint_s < 0 else max(delay, hint_s)

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
