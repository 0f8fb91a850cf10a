"""Schedules (execution_service.schedules) to protobuf."""

from __future__ import annotations

from agentrun.execution.v1 import execution_service_pb2 as pb

from agentrun_core.proto_convert import timestamp_to_pb
from execution_service.schedules.service import ScheduleView
from execution_service.schedules.spec import MissedTicks, ScheduleSpec

_MISSED = {
    MissedTicks.SKIP: pb.MISSED_TICK_POLICY_SKIP,
    MissedTicks.RUN_LATE_ONCE: pb.MISSED_TICK_POLICY_RUN_LATE_ONCE,
}


def schedule_spec_to_pb(spec: ScheduleSpec) -> pb.Schedule:
    return pb.Schedule(
        agent_name=spec.agent_name,
        name=spec.name,
        cron=spec.cron,
        timezone=spec.timezone,
        task=spec.task,
        variables=spec.variables,
        labels=spec.labels,
        missed_ticks=_MISSED[spec.missed],
    )


def schedule_view_to_pb(view: ScheduleView) -> pb.Schedule:
    message = schedule_spec_to_pb(view.spec)
    state = view.state
    message.paused = state.paused
    message.next_fire_times.extend(timestamp_to_pb(t) for t in view.next_times)
    if state.last_tick is not None:
        message.last_tick_time.CopyFrom(timestamp_to_pb(state.last_tick))
        message.last_run_id = state.last_run_id
    if state.changed_time is not None:
        message.paused_state_time.CopyFrom(timestamp_to_pb(state.changed_time))
        message.paused_state_changed_by = state.changed_by
    return message
