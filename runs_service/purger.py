"""The retention purge: a background task of RunsService deleting expired runs (runs_service.retention) in small
batches that never hold up ingest or queries.

Every `interval_s` (and once at start-up) a pass walks each retention plan's expired runs in (start_time, id) order
and deletes them batch by batch (runs_service.storage.deletion: one short transaction per batch). After each batch
it sleeps at least `pause_s`, and long enough that batches take at most `duty` of the time (the batch's duration x
(1 - duty) / duty: 9x at the default 0.1), so however large the backlog the purge keeps the database busy at most
that share of the time, and slows down by itself when the database is slow. On PostgreSQL one replica purges at a
time (a session advisory lock held for the pass; the others skip it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from agentrun_core.tasks import cancel_and_wait
from runs_service.errors import RunsServiceError
from runs_service.retention import PurgePlan, RetentionPolicy
from runs_service.storage.repository import RunRepository

log = logging.getLogger(__name__)

DEFAULT_DUTY = 0.1
# pg_try_advisory_lock key of the purge ("agentrun retention" as a 63-bit number).
_ADVISORY_KEY = 0x61676E7472756E52


class RetentionPurger:
    def __init__(
        self,
        repository: RunRepository,
        policy: RetentionPolicy,
        *,
        interval_s: float = 600.0,
        batch_size: int = 200,
        pause_s: float = 0.05,
        duty: float = DEFAULT_DUTY,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._repository = repository
        self._policy = policy
        self._interval_s = interval_s
        self._batch_size = batch_size
        self._pause_s = pause_s
        if not 0 < duty <= 1:
            raise ValueError(f"duty must be in (0, 1], got {duty}")
        self._rest_per_busy = (1 - duty) / duty
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.deleted_total = 0
        self.passes = 0
        # The delete batches so far (each one transaction): how many, their total and longest time.
        self.batches = 0
        self.batched_runs = 0
        self.batch_busy_s = 0.0
        self.longest_batch_s = 0.0

    def check(self) -> None:
        """Raises InvalidFilter when a plan cannot be compiled (a misconfigured rule): at start-up, not at 3 am."""
        for plan in self._policy.plans(self._clock()):
            self._repository.expired_conditions(plan)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention-purge")
            log.info(
                "retention purge scheduled",
                extra={
                    "policy": self._policy.describe(),
                    "interval_s": self._interval_s,
                    "batch_size": self._batch_size,
                },
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_and_wait(task)
            log.info("retention purge stopped", extra=self.batch_figures())

    def batch_figures(self) -> dict[str, float]:
        """What the purge did so far: runs deleted, batches, and their mean and longest duration (ms)."""
        return {
            "runs": self.batched_runs,
            "batch_size": self._batch_size,
            "batches": self.batches,
            "mean_batch_ms": round(1e3 * self.batch_busy_s / self.batches, 2) if self.batches else 0.0,
            "longest_batch_ms": round(1e3 * self.longest_batch_s, 2),
        }

    async def purge_once(self) -> int:
        """One pass over every plan; returns the runs deleted (0 when another replica holds the purge lock)."""
        async with self._repository.exclusive(_ADVISORY_KEY) as acquired:
            if not acquired:
                log.debug("retention purge skipped: another RunsService replica is purging")
                return 0
            now = self._clock()
            deleted = 0
            for plan in self._policy.plans(now):
                deleted += await self._purge(plan)
            self.passes += 1
            return deleted

    async def _purge(self, plan: PurgePlan) -> int:
        started = time.monotonic()
        deleted = await self._repository.purge_expired(plan, batch_size=self._batch_size, pause=self._pause)
        self.deleted_total += deleted
        if deleted:
            log.info(
                "expired runs deleted",
                extra={
                    "rule": plan.description,
                    "cutoff": plan.cutoff.isoformat(),
                    "runs": deleted,
                    "seconds": round(time.monotonic() - started, 3),
                },
            )
        return deleted

    async def _pause(self, elapsed_s: float, deleted: int, last: bool) -> None:
        self.batches += 1
        self.batched_runs += deleted
        self.batch_busy_s += elapsed_s
        self.longest_batch_s = max(self.longest_batch_s, elapsed_s)
        if not last:
            await asyncio.sleep(max(self._pause_s, elapsed_s * self._rest_per_busy))

    async def _run(self) -> None:
        while True:
            try:
                await self.purge_once()
            except asyncio.CancelledError:
                raise
            except RunsServiceError as exc:  # the database is unavailable: try again next time
                log.warning("retention purge failed; trying again later", extra={"error": exc.message})
            except Exception:
                log.exception("retention purge failed unexpectedly; trying again later")
            await asyncio.sleep(self._interval_s)
