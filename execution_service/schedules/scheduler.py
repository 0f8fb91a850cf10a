"""The tick loop of one replica (embedded mode): for every schedule of the loaded agents, at each tick, claim the
tick in RunsService and, when this replica won it, start the run. However many replicas run the loop, each tick
starts one run: RunsService answers CLAIMED to exactly one of them.

Where a replica starts looking at a schedule (its cursor) comes from RunsService: the latest tick claimed, or the
last resume when later; a schedule never claimed, or paused, starts from now. What happens to ticks missed in
between is plan.decide's. A claimed tick whose run then fails to start is logged (the claim is not undone: a tick
runs at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from agentrun_core.ids import new_run_id
from execution_service.agents.registry import AgentRegistry
from execution_service.engine.run_request import StartRun
from execution_service.errors import ExecutionError, RunsServiceUnavailable, ServiceShuttingDown
from execution_service.schedules.cron import CronTimes
from execution_service.schedules.plan import decide
from execution_service.schedules.spec import SCHEDULE_LABEL, SCHEDULER_USER, TICK_LABEL, ScheduleSpec
from execution_service.schedules.store import Claim, ScheduleStore

log = logging.getLogger(__name__)

# Sleeps end this much after the tick they wait for.
_TIMER_SLACK_S = 0.005

StartRunFn = Callable[[StartRun], Awaitable[Any]]


class TickSource(Protocol):
    """What starts scheduled runs in a replica: the embedded Scheduler, or the durable mode's DurableSchedules."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    # Which replica claims (recorded with each claim).
    replica: str
    # A tick handled later than this after its time is missed (plan.decide).
    grace_s: float = 60.0
    # How often the agents directory is re-read for added, changed and removed schedules.
    refresh_s: float = 5.0
    # After RunsService failed to answer, the wait before asking again.
    retry_s: float = 1.0


def tick_labels(spec: ScheduleSpec, tick: datetime) -> dict[str, str]:
    """The run's labels: the schedule's own, and which schedule and tick started it."""
    return {
        **spec.labels,
        SCHEDULE_LABEL: spec.key,
        TICK_LABEL: tick.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


@dataclass
class _Tracked:
    spec: ScheduleSpec
    times: CronTimes
    # The latest tick handled (claimed, found claimed, paused or skipped); None until read from RunsService.
    cursor: datetime | None = None


class Scheduler:
    def __init__(
        self,
        agents: AgentRegistry,
        start_run: StartRunFn,
        store: ScheduleStore,
        settings: SchedulerSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._agents = agents
        self._start_run = start_run
        self._store = store
        self._settings = settings
        self._clock = clock
        self._tracked: dict[str, _Tracked] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._refreshed_at = -math.inf

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        log.info("scheduler started", extra={"replica": self._settings.replica})
        while not self._stopping.is_set():
            try:
                delay = await self._round()
            except Exception:  # a bug must not stop every schedule for good: logged, retried
                log.exception("scheduler round failed")
                delay = self._settings.retry_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(delay, 0.0))
        log.info("scheduler stopped", extra={"replica": self._settings.replica})

    async def _round(self) -> float:
        """Handles every due tick; returns how long to sleep until the next one (or the next refresh)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._refreshed_at >= self._settings.refresh_s:
            await asyncio.to_thread(self._agents.reload)
            self._refresh()
            self._refreshed_at = loop.time()
        retry = False
        try:
            await self._read_cursors()
        except RunsServiceUnavailable:
            retry = True
        for tracked in self._tracked.values():
            if self._stopping.is_set():
                break
            if tracked.cursor is not None and not await self._handle(tracked):
                retry = True
        now = self._clock()
        until_refresh = self._settings.refresh_s - (loop.time() - self._refreshed_at)
        delays = [until_refresh, self._settings.retry_s if retry else math.inf]
        for tracked in self._tracked.values():
            if tracked.cursor is not None:
                delays.append((tracked.times.next_after(max(tracked.cursor, now)) - now).total_seconds())
        # A timer may fire a little early: wake just after the tick, not just before it.
        return max(0.0, min(delays)) + _TIMER_SLACK_S

    def _refresh(self) -> None:
        """Tracks the loaded agents' schedules; a changed schedule keeps its cursor."""
        current = {spec.key: spec for agent in self._agents.agents() for spec in agent.schedules}
        tracked: dict[str, _Tracked] = {}
        for key, spec in current.items():
            previous = self._tracked.get(key)
            if previous is not None and previous.spec == spec:
                tracked[key] = previous
                continue
            tracked[key] = _Tracked(spec, CronTimes(spec.cron, spec.timezone), previous.cursor if previous else None)
            log.info("schedule loaded", extra={"schedule": key, "cron": spec.cron, "timezone": spec.timezone})
        for key in self._tracked.keys() - current.keys():
            log.info("schedule removed", extra={"schedule": key})
        self._tracked = tracked

    async def _read_cursors(self) -> None:
        """Cursors of newly tracked schedules, from RunsService."""
        unread = [key for key, tracked in self._tracked.items() if tracked.cursor is None]
        if not unread:
            return
        states = await self._store.states(unread)
        now = self._clock()
        for key in unread:
            state = states.get(key)
            if state is None or state.paused:  # never run, or paused: no tick before now was missed
                self._tracked[key].cursor = now
                continue
            marks = [t for t in (state.last_tick, state.changed_time) if t is not None]
            self._tracked[key].cursor = max(marks) if marks else now

    async def _handle(self, tracked: _Tracked) -> bool:
        """Claims and starts the tick due, if any. False when RunsService did not answer (retried later)."""
        assert tracked.cursor is not None
        spec = tracked.spec
        now = self._clock()
        decision = decide(tracked.times, tracked.cursor, now, spec.missed, self._settings.grace_s)
        if decision is None:
            return True
        context = {"schedule": spec.key, "tick": decision.latest.isoformat()}
        if decision.skipped:
            log.warning("schedule ticks missed: no run for them", extra={**context, "missed_ticks": decision.skipped})
        if decision.claim is None:
            tracked.cursor = decision.latest
            return True
        run_id = new_run_id()
        try:
            answer = await self._store.claim(spec.key, decision.claim, run_id, self._settings.replica)
        except RunsServiceUnavailable:
            return False
        tracked.cursor = decision.latest
        if answer.claim is Claim.CLAIMED:
            await self._start(spec, decision.claim, run_id, late=decision.late)
        elif answer.claim is Claim.PAUSED:
            log.info("schedule paused: tick not run", extra=context)
        else:
            log.debug("tick claimed by another replica", extra={**context, "replica": answer.replica})
        return True

    async def _start(self, spec: ScheduleSpec, tick: datetime, run_id: str, *, late: bool) -> None:
        context = {"schedule": spec.key, "tick": tick.isoformat(), "run_id": run_id}
        try:
            await self._start_run(
                StartRun(
                    agent_name=spec.agent_name,
                    task=spec.task,
                    user=SCHEDULER_USER,
                    variables=dict(spec.variables),
                    labels=tick_labels(spec, tick),
                    run_id=run_id,
                )
            )
        except ServiceShuttingDown:
            log.warning("scheduled run not started: the service is shutting down", extra=context)
            self._stopping.set()
            return
        except ExecutionError as exc:
            log.error("scheduled run could not start: %s", exc.message, extra={**context, "reason": exc.reason})
            return
        log.info("scheduled run started late" if late else "scheduled run started", extra=context)
