"""A replica's background chore: one coroutine function run every `interval_s` in a task of its own until `stop`
(the heartbeat and takeover, the queue timeout sweep, the given-up runs' sweep, the retention's purge; a notification
listener's sessions, each run again `interval_s` after it ended). A pass that fails is logged (once with its traceback
while it keeps failing the same way: agentrun_core.failure_streak) and the next interval tries again."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from agentrun_core.failure_streak import FailureStreak
from agentrun_core.tasks import cancel_and_wait


class Periodic:
    def __init__(
        self,
        work: Callable[[], Awaitable[Any]],
        *,
        interval_s: float,
        name: str,
        chore: str,
        failed: str,
        log: logging.Logger,
        first_at_once: bool = True,
    ) -> None:
        """`name`: the task's; `chore`: what it does, as a noun; `failed`: the message `log` gets when a pass fails;
        `first_at_once`: the first pass at `start` (else one interval later)."""
        self._work = work
        self._interval_s = interval_s
        self._name = name
        self._failures = FailureStreak(log, chore, failed)
        self._first_at_once = first_at_once
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def working(self) -> None:
        """A pass that runs until it fails (a listener's session) says it works, once it does."""
        self._failures.succeeded()

    async def _run(self) -> None:
        if not self._first_at_once:
            await asyncio.sleep(self._interval_s)
        while True:
            try:
                await self._work()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._failures.failed(error)
            else:
                self._failures.succeeded()
            await asyncio.sleep(self._interval_s)
