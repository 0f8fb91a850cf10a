"""`agentrun schedules list`: each schedule, its state and its next fire times, as a short block per schedule (the
fire times stay whole on a narrow terminal)."""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from rich.console import Group, RenderableType
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


def schedule_block(schedule: ex_pb2.Schedule) -> Text:
    text = Text.assemble(
        (schedule_key(schedule), "bold cyan"),
        "  ",
        state_text(schedule),
        f"  {schedule.cron} ({schedule.timezone})  missed ticks: {MISSED_NAMES.get(schedule.missed_ticks, 'skip')}",
    )
    if schedule.next_fire_times:
        text.append("\n  next: " + ", ".join(fmt.timestamp(t) for t in schedule.next_fire_times))
    else:
        text.append("\n  next: none while paused", style="yellow")
    if schedule.HasField("last_tick_time"):
        text.append(f"\n  last tick: {fmt.timestamp(schedule.last_tick_time)}  run {schedule.last_run_id}")
    text.append(f"\n  task: {fmt.truncate(schedule.task, 200)}", style="dim")
    return text


def schedules_view(schedules: Sequence[ex_pb2.Schedule]) -> RenderableType:
    if not schedules:
        return Text("no schedules: agents declare them in their front matter (schedule:)", style="dim")
    blocks: list[RenderableType] = []
    for index, schedule in enumerate(schedules):
        if index:
            blocks.append(Text(""))
        blocks.append(schedule_block(schedule))
    return Group(*blocks)
