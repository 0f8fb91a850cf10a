"""What ListSchedules, PauseSchedule and ResumeSchedule answer: the loaded agents' schedules with their shared
state (RunsService) and next fire times."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from agentrun_core.echo import shown
from execution_service.agents.registry import AgentRegistry
from execution_service.errors import AgentNotFound, InvalidRequest, ScheduleNotFound
from execution_service.schedules.cron import CronTimes
from execution_service.schedules.spec import ScheduleSpec
from execution_service.schedules.store import ScheduleStore, StoredState

DEFAULT_NEXT_TIMES = 3
MAX_NEXT_TIMES = 100


@dataclass(frozen=True, slots=True)
class ScheduleView:
    spec: ScheduleSpec
    state: StoredState
    # Soonest first; empty while paused.
    next_times: list[datetime]


class Schedules:
    def __init__(self, agents: AgentRegistry, store: ScheduleStore) -> None:
        self._agents = agents
        self._store = store

    async def listed(self, agent_name: str, next_count: int) -> list[ScheduleView]:
        if next_count < 0:
            raise InvalidRequest("next_fire_time_count", f"must not be negative, got {next_count}")
        count = min(next_count or DEFAULT_NEXT_TIMES, MAX_NEXT_TIMES)
        await asyncio.to_thread(self._agents.reload)
        specs = self._declared(agent_name, "") if agent_name else self._all()
        return await self._views(specs, count)

    async def set_paused(self, agent_name: str, schedule_name: str, *, paused: bool, by: str) -> list[ScheduleView]:
        await asyncio.to_thread(self._agents.reload)
        specs = self._declared(agent_name, schedule_name)
        for spec in specs:
            await self._store.set_paused(spec.key, paused, by)
        return await self._views(specs, DEFAULT_NEXT_TIMES)

    def _all(self) -> list[ScheduleSpec]:
        return [spec for agent in self._agents.agents() for spec in agent.schedules]

    def _declared(self, agent_name: str, schedule_name: str) -> list[ScheduleSpec]:
        """The agent's schedules (one when `schedule_name` is set). NOT_FOUND naming what exists otherwise."""
        if not agent_name:
            raise InvalidRequest("agent_name", "must not be empty")
        agent = self._agents.get(agent_name)
        if agent is None:
            raise AgentNotFound(
                f"agent {shown(agent_name)} not found (or its file does not load: agentrun agents list)"
            )
        if not schedule_name:
            if not agent.schedules:
                raise ScheduleNotFound(f"agent {agent_name!r} declares no schedule")
            return list(agent.schedules)
        for spec in agent.schedules:
            if spec.name == schedule_name:
                return [spec]
        names = ", ".join(s.name for s in agent.schedules) or "none"
        raise ScheduleNotFound(f"agent {agent_name!r} has no schedule {shown(schedule_name)}; its schedules: {names}")

    async def _views(self, specs: list[ScheduleSpec], count: int) -> list[ScheduleView]:
        states = await self._store.states([spec.key for spec in specs]) if specs else {}
        now = datetime.now(UTC)
        views = []
        for spec in specs:
            state = states.get(spec.key, StoredState())
            next_times = [] if state.paused else CronTimes(spec.cron, spec.timezone).next_times(now, count)
            views.append(ScheduleView(spec, state, next_times))
        return views
