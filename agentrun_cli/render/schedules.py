"""`agentrun schedules list`: each schedule, its state and its next fire times."""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt

MISSED_NAMES = {
    ex_pb2.MISSED_TICK_POLICY_UNSPECIFIED: "skip",
    ex_pb2.MISSED_TICK_POLICY_SKIP: "skip",
    ex_pb2.MISSED_TICK_POLICY_RUN_LATE_ONCE: "run late once",
}


def schedule_key(schedule: ex_pb2.Schedule) -> str:
    return f"{schedule.agent_name}/{schedule.name}"


def state_text(schedule: ex_pb2.Schedule) -> Text:
    if schedule.paused:
        by = f" by {schedule.paused_state_changed_by}" if schedule.paused_state_changed_by else ""
        return Text(f"paused{by}", style="yellow")
    return Text("active", style="green")


def schedules_table(schedules: Sequence[ex_pb2.Schedule]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("schedule", style="cyan", no_wrap=True)
    table.add_column("cron", no_wrap=True)
    table.add_column("timezone")
    table.add_column("state")
    table.add_column("missed")
    table.add_column("next fire times (UTC)")
    table.add_column("last tick (UTC)")
    table.add_column("task")
    for schedule in schedules:
        next_times = "\n".join(fmt.timestamp(t) for t in schedule.next_fire_times) or fmt.NONE
        table.add_row(
            schedule_key(schedule),
            schedule.cron,
            schedule.timezone,
            state_text(schedule),
            MISSED_NAMES.get(schedule.missed_ticks, "skip"),
            next_times,
            fmt.optional_timestamp(schedule, "last_tick_time"),
            fmt.truncate(schedule.task, 40),
        )
    if not schedules:
        table.caption = "no schedules: agents declare them in their front matter (schedule:)"
    return table
