"""Per-user limits on the streaming RPCs: concurrent streams (ExecuteAgent + WatchRun) and the ExecuteAgent rate.

Both are per identity (`current_identity().user`); with authentication off every caller is "local" and shares them.
State is in memory, per instance.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from execution_service.errors import RateLimited, TooManyStreams

# Idle users' buckets are forgotten beyond this many (a full bucket is the same as no bucket).
_MAX_TRACKED_USERS = 10_000


@dataclass(frozen=True, slots=True)
class CallLimits:
    max_streams_per_user: int = 16  # 0: no cap
    rate_per_minute: float = 60.0  # 0: no limit
    burst: int = 20


class StreamLimiter:
    def __init__(self, max_per_user: int) -> None:
        self._max = max_per_user
        self._open: dict[str, int] = {}

    def open_streams(self, user: str) -> int:
        return self._open.get(user, 0)

    def acquire(self, user: str) -> None:
        """Takes one of `user`'s stream slots (give it back with `release`); TooManyStreams when none is free."""
        if self._max > 0 and self._open.get(user, 0) >= self._max:
            raise TooManyStreams(
                f"user {user!r} already has {self._max} streams open (ExecuteAgent and WatchRun), the limit "
                "(AGENTRUN_MAX_STREAMS_PER_USER); close one or detach",
                retry_after_s=1.0,
            )
        self._open[user] = self._open.get(user, 0) + 1

    def release(self, user: str) -> None:
        left = self._open.get(user, 1) - 1
        if left > 0:
            self._open[user] = left
        else:
            self._open.pop(user, None)


class RateLimiter:
    """A token bucket per user: `burst` calls at once, refilled at `per_minute` calls per minute."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate_per_s = per_minute / 60.0
        self._burst = float(max(1, burst))
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def acquire(self, user: str) -> None:
        """Takes one call from `user`'s bucket; RateLimited (with the wait until the next one) when it is empty."""
        if self._rate_per_s <= 0:
            return
        now = self._clock()
        tokens, at = self._buckets.get(user, (self._burst, now))
        tokens = min(self._burst, tokens + (now - at) * self._rate_per_s)
        if tokens < 1.0:
            self._buckets[user] = (tokens, now)
            wait_s = (1.0 - tokens) / self._rate_per_s
            raise RateLimited(
                f"user {user!r} starts runs faster than {self._rate_per_s * 60:g} per minute "
                f"(AGENTRUN_RATE_LIMIT_PER_MINUTE); retry in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )
        self._buckets[user] = (tokens - 1.0, now)
        if len(self._buckets) > _MAX_TRACKED_USERS:
            self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        for user, (tokens, at) in list(self._buckets.items()):
            if tokens + (now - at) * self._rate_per_s >= self._burst:
                del self._buckets[user]
