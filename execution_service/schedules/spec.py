"""A schedule as an agent file declares it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# The labels every scheduled run carries (besides the schedule's own).
SCHEDULE_LABEL = "agentrun.schedule"
TICK_LABEL = "agentrun.schedule_tick"
# The user scheduled runs are recorded under.
SCHEDULER_USER = "scheduler"


class MissedTicks(enum.StrEnum):
    """What a schedule does with ticks that passed while no replica ran (or RunsService was unreachable)."""

    SKIP = "skip"
    RUN_LATE_ONCE = "run_late_once"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    agent_name: str
    # Unique within the agent.
    name: str
    # Five fields, or six with seconds first.
    cron: str
    # IANA zone name the cron is read in.
    timezone: str
    task: str
    variables: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    missed: MissedTicks = MissedTicks.SKIP

    @property
    def key(self) -> str:
        """ "<agent>/<name>": how labels, the CLI and RunsService name the schedule."""
        return f"{self.agent_name}/{self.name}"
