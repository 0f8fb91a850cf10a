"""The one backoff formula of the project: capped exponential delays with jitter, honouring a server's own hint.

Three callers wait between attempts, each with its own settings and its own loop around this delay computation:
- model calls (execution_service.model.retry.ModelRetryPolicy): full jitter, the provider's RetryInfo honoured;
- MCP server reconnects (execution_service.tools.connection): the first reconnect is immediate, later ones back off;
- outbox delivery to RunsService (execution_service.publish.publisher): a delay per record, RunsService's RetryInfo
  honoured.

Wait number n (1 for the wait after the first failure) is at most `min(max_s, initial_s * multiplier ** (n - 1))`,
scaled by a random factor in [1 - jitter, 1] so that many callers failing together do not retry in lockstep
(jitter 1 is "full jitter", 0 none). A server's delay hint (google.rpc.RetryInfo) is a floor, itself capped at
`max_s`: the caller waits at least what the server asked, never longer than the cap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

# Beyond this many doublings the delay is the cap anyway; bounding the exponent keeps a long outage from overflowing.
_MAX_EXPONENT = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_s: float = 0.5
    multiplier: float = 2.0
    max_s: float = 30.0
    jitter: float = 1.0
    # Uniform in [0, 1); tests pass a fixed value or a seeded generator's `random`.
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.initial_s) and math.isfinite(self.max_s)) or self.initial_s < 0 or self.max_s < 0:
            raise ValueError(
                f"backoff delays must be finite and >= 0, got initial_s={self.initial_s}, max_s={self.max_s}"
            )
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"backoff jitter must be between 0 and 1, got {self.jitter}")

    def ceiling_s(self, wait_number: int) -> float:
        """The capped exponential delay of wait `wait_number` (1 for the first), before jitter."""
        exponent = min(max(wait_number, 1) - 1, _MAX_EXPONENT)
        return min(self.max_s, self.initial_s * self.multiplier**exponent)

    def delay_s(self, wait_number: int, hint_s: float | None = None) -> float:
        """The delay before the next attempt: jittered `ceiling_s`, at least the server's hint (capped at max_s)."""
        delay = self.ceiling_s(wait_number) * (1.0 - self.jitter * self.random())
        if hint_s is not None and hint_s >= 0:
            delay = max(delay, min(hint_s, self.max_s))
        return delay
