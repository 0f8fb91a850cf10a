"""Logging a background chore that fails pass after pass, e.g. while a database is down: a heartbeat, a listener that
reconnects every second, a sweep. Logging each pass's traceback would bury the log (a 30 s outage of the execution
database wrote ~130 tracebacks); logging fewer must not hide anything. So: the first failure with its traceback, a
failure unlike the one before (another exception or message) with its own, then while the same failure repeats one
line every `every_s` with how many passes failed since when, and once the chore works again, one line saying so."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

REPEAT_EVERY_S = 30.0


class FailureStreak:
    def __init__(
        self,
        log: logging.Logger,
        chore: str,
        message: str,
        *,
        every_s: float = REPEAT_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`chore`: what fails, as a noun ("the heartbeat and takeover"); `message`: what a failure logs ("heartbeat or
        takeover failed; trying again next interval")."""
        self._log = log
        self._chore = chore
        self._what = message
        self._every_s = every_s
        self._clock = clock
        self._failures = 0
        self._since = 0.0
        self._logged_at = 0.0
        self._last: tuple[str, str] | None = None

    @property
    def failing(self) -> bool:
        return self._failures > 0

    def failed(self, error: BaseException) -> None:
        """A pass failed with `error` (call it from the `except` block, or anywhere with the exception)."""
        now = self._clock()
        kind = (type(error).__name__, str(error).strip().split("\n", 1)[0])
        if self._failures == 0:
            self._since = now
        self._failures += 1
        if kind != self._last:
            self._last = kind
            self._logged_at = now
            extra = {"failed_passes": self._failures} if self._failures > 1 else {}
            self._log.error(self._what, exc_info=error, extra=extra)
        elif now - self._logged_at >= self._every_s:
            self._logged_at = now
            self._log.error(
                "%s (still failing: %d passes over %.0f s; last: %s: %s)",
                self._what,
                self._failures,
                now - self._since,
                *kind,
                extra={"failed_passes": self._failures},
            )

    def succeeded(self) -> None:
        """A pass worked: after failures, says so once (with how long it failed)."""
        if self._failures:
            self._log.info(
                "%s works again after %d failed passes over %.1f s",
                self._chore,
                self._failures,
                self._clock() - self._since,
            )
        self._failures = 0
        self._last = None
