"""Schedules in the durable mode: DBOS scheduled workflows instead of the embedded tick loop.

Each agent schedule is a DBOS schedule named "<agent>/<name>" whose workflow (`schedule_tick`) DBOS starts once per
tick, with the workflow id `sched-<name>-<tick>`: however many replicas run, a tick is one workflow, and its steps
are checkpointed, so the run it starts is started exactly once (a replica that dies mid-tick leaves the workflow to
be recovered, and the recovery reuses the run id and the claim it recorded). The workflow:

1. makes the run id (a step: recovered, it is the same id);
2. claims the tick in RunsService (a step), as the embedded scheduler does: RunsService keeps the pause state and
   the last tick of every schedule in both modes, and refuses a paused schedule's tick;
3. starts the run, a DBOS workflow of its own whose id is the run id (a child workflow: never started twice).

`DurableSchedules` keeps DBOS's schedules in step with the agent files and with RunsService's pause state (every
`refresh_s`), and starts the latest missed tick of a `run_late_once` schedule with DBOS's backfill (the same
workflow id as the live tick, so replicas doing it at once start it once). DBOS itself never backfills (a missed
tick of a `skip` schedule starts nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dbos import DBOS

from agentrun_core.failure_streak import FailureStreak
from agentrun_core.ids import new_run_id
from execution_service.agents.registry import AgentRegistry
from execution_service.engine.run_request import StartRun
from execution_service.errors import ExecutionError, RunAlreadyExists, RunIdUncheckable, RunsServiceUnavailable
from execution_service.schedules.cron import CronTimes
from execution_service.schedules.plan import decide
from execution_service.schedules.scheduler import SchedulerSettings, tick_labels
from execution_service.schedules.spec import SCHEDULER_USER, MissedTicks, ScheduleSpec
from execution_service.schedules.store import Claim, ScheduleStore

log = logging.getLogger(__name__)

TICK_WORKFLOW = "agentrun.schedule_tick"
# A tick's run is started again this often, this far apart, while RunsService cannot say whether its id was used.
START_ATTEMPTS = 8
START_RETRY_S = 1.0
_ONE_MICROSECOND = timedelta(microseconds=1)

StartRunFn = Callable[[StartRun], Awaitable[Any]]


class _Binding:
    """What this process's tick workflows use; set once the run manager exists (a workflow recovered at launch
    waits for it)."""

    def __init__(self) -> None:
        self.ready = asyncio.Event()
        self.agents: AgentRegistry | None = None
        self.start_run: StartRunFn | None = None
        self.store: ScheduleStore | None = None
        self.replica = ""

    def bind(self, agents: AgentRegistry, start_run: StartRunFn, store: ScheduleStore, replica: str) -> None:
        self.agents, self.start_run, self.store, self.replica = agents, start_run, store, replica
        self.ready.set()


_binding = _Binding()


@DBOS.step(name="agentrun.schedule_run_id")
async def _make_run_id() -> str:
    return new_run_id()


@DBOS.step(name="agentrun.schedule_claim", retries_allowed=True, max_attempts=8, interval_seconds=1.0)
async def _claim(schedule: str, tick: datetime, run_id: str) -> str:
    """The claim's outcome: "claimed" (also when this run id holds it already: a recovered workflow), "paused",
    or "taken" (another run id holds the tick). RunsService unavailable: retried by DBOS."""
    assert _binding.store is not None
    answer = await _binding.store.claim(schedule, tick, run_id, _binding.replica)
    if answer.claim is Claim.CLAIMED or (answer.claim is Claim.ALREADY_CLAIMED and answer.run_id == run_id):
        return "claimed"
    return "paused" if answer.claim is Claim.PAUSED else "taken"


@DBOS.workflow(name=TICK_WORKFLOW)
async def schedule_tick(scheduled_at: datetime, schedule: str) -> None:
    await _binding.ready.wait()
    assert _binding.agents is not None and _binding.start_run is not None
    tick = scheduled_at.astimezone(UTC)
    context = {"schedule": schedule, "tick": tick.isoformat()}
    spec = _declared(_binding.agents, schedule)
    if spec is None:
        log.warning("scheduled tick of a schedule no agent declares any more: no run", extra=context)
        return
    run_id = await _make_run_id()
    outcome = await _claim(schedule, tick, run_id)
    if outcome != "claimed":
        log.info("scheduled tick not run", extra={**context, "outcome": outcome})
        return
    request = StartRun(
        agent_name=spec.agent_name,
        task=spec.task,
        user=SCHEDULER_USER,
        variables=dict(spec.variables),
        labels=tick_labels(spec, tick),
        run_id=run_id,
    )
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            await _binding.start_run(request)
        except RunAlreadyExists:
            log.info("scheduled run already started (recovered tick)", extra={**context, "run_id": run_id})
            return
        except RunIdUncheckable as exc:  # RunsService did not answer whether the id was used: a blip, try again
            if attempt == START_ATTEMPTS:
                log.error("scheduled run could not start: %s", exc.message, extra={**context, "run_id": run_id})
                return
            await asyncio.sleep(START_RETRY_S)
            continue
        except ExecutionError as exc:
            log.error("scheduled run could not start: %s", exc.message, extra={**context, "run_id": run_id})
            return
        log.info("scheduled run started", extra={**context, "run_id": run_id})
        return


def _declared(agents: AgentRegistry, schedule: str) -> ScheduleSpec | None:
    agent_name, _, name = schedule.partition("/")
    agent = agents.get(agent_name)
    return next((s for s in agent.schedules if s.name == name), None) if agent is not None else None


def bind_tick_runner(agents: AgentRegistry, start_run: StartRunFn, store: ScheduleStore, replica: str) -> None:
    """Lets this process run tick workflows (DBOS may hand any replica a tick, AGENTRUN_SCHEDULER or not)."""
    _binding.bind(agents, start_run, store, replica)


class DurableSchedules:
    """Keeps DBOS's schedules in step with the agents' and RunsService's pause state; backfills late ticks."""

    def __init__(self, agents: AgentRegistry, store: ScheduleStore, settings: SchedulerSettings) -> None:
        self._agents = agents
        self._store = store
        self._settings = settings
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._sync_failures = FailureStreak(log, "the durable schedules' sync", "durable schedules: sync failed")

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="durable-schedules")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        log.info("schedules on DBOS (durable mode)", extra={"replica": self._settings.replica})
        while not self._stopping.is_set():
            delay = self._settings.refresh_s
            try:
                await self.sync()
            except RunsServiceUnavailable:
                delay = self._settings.retry_s
            except Exception as error:  # logged and retried: a bug must not stop keeping schedules in step
                self._sync_failures.failed(error)
                delay = self._settings.retry_s
            else:
                self._sync_failures.succeeded()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=delay)

    async def sync(self) -> None:
        """One pass: DBOS's schedules = the agents' (cron, time zone), paused as RunsService says; the latest late
        tick of each run_late_once schedule started."""
        await asyncio.to_thread(self._agents.reload)
        desired = {spec.key: spec for agent in self._agents.agents() for spec in agent.schedules}
        states = await self._store.states(list(desired)) if desired else {}
        existing = {s["schedule_name"]: s for s in await DBOS.list_schedules_async(workflow_name=TICK_WORKFLOW)}
        for name in existing.keys() - desired.keys():
            await DBOS.delete_schedule_async(name)
            log.info("schedule removed from DBOS", extra={"schedule": name})
        changed = [
            spec
            for key, spec in desired.items()
            if key not in existing
            or existing[key]["schedule"] != spec.cron
            or (existing[key].get("cron_timezone") or "UTC") != spec.timezone
        ]
        if changed:
            await DBOS.apply_schedules_async(
                [
                    {
                        "schedule_name": spec.key,
                        "workflow_fn": schedule_tick,
                        "schedule": spec.cron,
                        "context": spec.key,
                        "cron_timezone": spec.timezone,
                    }
                    for spec in changed
                ]
            )
            log.info("schedules applied to DBOS", extra={"schedules": [s.key for s in changed]})
        for key in desired:
            paused = key in states and states[key].paused
            active = key in {s.key for s in changed} or existing[key]["status"] == "ACTIVE"
            if paused and active:
                await asyncio.to_thread(DBOS.pause_schedule, key)
            elif not paused and not active:
                await asyncio.to_thread(DBOS.resume_schedule, key)
        now = datetime.now(UTC)
        for key, spec in desired.items():
            state = states.get(key)
            if spec.missed is MissedTicks.RUN_LATE_ONCE and state is not None and not state.paused:
                await self._backfill_late(spec, state.last_tick, state.changed_time, now)

    async def _backfill_late(
        self, spec: ScheduleSpec, last_tick: datetime | None, resumed: datetime | None, now: datetime
    ) -> None:
        marks = [t for t in (last_tick, resumed) if t is not None]
        if not marks:
            return  # never run: nothing was missed
        decision = decide(CronTimes(spec.cron, spec.timezone), max(marks), now, spec.missed, self._settings.grace_s)
        if decision is None or not decision.late or decision.claim is None:
            return  # on time ticks are DBOS's own
        tick = decision.claim
        await asyncio.to_thread(DBOS.backfill_schedule, spec.key, tick - _ONE_MICROSECOND, tick + _ONE_MICROSECOND)
        log.warning(
            "late tick started once (missed: run_late_once)",
            extra={"schedule": spec.key, "tick": tick.isoformat(), "missed_ticks": decision.skipped + 1},
        )
