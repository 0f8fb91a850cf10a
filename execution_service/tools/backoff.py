"""Exponential backoff with jitter and a cap, for reconnecting to MCP servers."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before reconnect attempt number `failures` (1 = after the first failure).

    The first reconnect is immediate: a server that crashed once should not fail the very next call. After
    that, delay = min(cap, initial * multiplier ** (failures - 2)), scaled by a random factor in
    [1 - jitter, 1] so that many connections failing together do not retry in lockstep.
    """

    initial_s: float = 0.5
    multiplier: float = 2.0
    cap_s: float = 30.0
    jitter: float = 0.2
    random: Callable[[], float] = field(default=random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.cap_s < 0:
            raise ValueError("backoff delays must be >= 0")
        if self.multiplier < 1:
            raise ValueError("backoff multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("backoff jitter must be between 0 and 1")

    def delay(self, failures: int) -> float:
        if failures <= 1:
            return 0.0
        # Cap the exponent too, so a long outage cannot overflow the float.
        base = min(self.cap_s, self.initial_s * self.multiplier ** min(failures - 2, 64))
        return base * (1.0 - self.jitter * self.random())
