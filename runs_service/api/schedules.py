"""The schedule RPCs of RunsService (ClaimScheduleTick, ListScheduleStates, SetSchedulePaused): request checks and
protobuf <-> runs_service.storage.schedules."""

from __future__ import annotations

import re

from agentrun.runs.v1 import runs_service_pb2 as pb

from agentrun_core.echo import shown
from agentrun_core.identity import current_identity
from agentrun_core.ids import run_id_problem
from agentrun_core.proto_convert import timestamp_from_pb, timestamp_to_pb
from runs_service.errors import InvalidArgument, PermissionDenied
from runs_service.storage.schedules import ClaimOutcome, ClaimResult, ScheduleState, TickClaim

# "<agent>/<schedule name>", both [a-z0-9][a-z0-9_-]* as agent names are.
SCHEDULE_KEY = re.compile(r"[a-z0-9][a-z0-9_-]*/[a-z0-9][a-z0-9_-]*")
MAX_SCHEDULE_KEY_CHARS = 200
MAX_NAME_CHARS = 200
MAX_LISTED_SCHEDULES = 1000

_OUTCOMES = {
    ClaimOutcome.CLAIMED: pb.SCHEDULE_TICK_CLAIM_CLAIMED,
    ClaimOutcome.ALREADY_CLAIMED: pb.SCHEDULE_TICK_CLAIM_ALREADY_CLAIMED,
    ClaimOutcome.PAUSED: pb.SCHEDULE_TICK_CLAIM_PAUSED,
}


def check_schedule_caller(rpc: str) -> None:
    if not current_identity.get().may_record_runs:
        raise PermissionDenied(f"{rpc} is reserved to the execution service and admins")


def checked_schedule(value: str, field: str = "schedule") -> str:
    if len(value) > MAX_SCHEDULE_KEY_CHARS:
        raise InvalidArgument(field, f"is {len(value)} characters, over the cap of {MAX_SCHEDULE_KEY_CHARS}")
    if not SCHEDULE_KEY.fullmatch(value):
        raise InvalidArgument(
            field,
            "must be <agent>/<schedule name> (each [a-z0-9][a-z0-9_-]*), e.g. daily-report/morning; "
            f"got {shown(value)}",
        )
    return value


def _checked_text(value: str, field: str) -> str:
    if len(value) > MAX_NAME_CHARS:
        raise InvalidArgument(field, f"is {len(value)} characters, over the cap of {MAX_NAME_CHARS}")
    if "\x00" in value:
        raise InvalidArgument(field, "must not contain NUL characters")
    return value


def claim_from_pb(request: pb.ClaimScheduleTickRequest) -> TickClaim:
    schedule = checked_schedule(request.schedule)
    if not request.HasField("tick_time"):
        raise InvalidArgument("tick_time", "is required: the cron time the run is for")
    problem = run_id_problem(request.run_id)
    if problem is not None:
        raise InvalidArgument("run_id", problem)
    return TickClaim(
        schedule=schedule,
        tick_time=timestamp_from_pb(request.tick_time),
        run_id=request.run_id,
        replica=_checked_text(request.replica, "replica"),
    )


def claim_result_to_pb(result: ClaimResult) -> pb.ClaimScheduleTickResponse:
    response = pb.ClaimScheduleTickResponse(outcome=_OUTCOMES[result.outcome])
    if result.claim is not None:
        response.run_id = result.claim.run_id
        response.replica = result.claim.replica
    return response


def listed_schedules(request: pb.ListScheduleStatesRequest) -> list[str]:
    if len(request.schedules) > MAX_LISTED_SCHEDULES:
        raise InvalidArgument("schedules", f"at most {MAX_LISTED_SCHEDULES} per call, got {len(request.schedules)}")
    return [checked_schedule(s, f"schedules[{i}]") for i, s in enumerate(request.schedules)]


def pause_from_pb(request: pb.SetSchedulePausedRequest) -> tuple[str, bool, str]:
    return checked_schedule(request.schedule), request.paused, _checked_text(request.changed_by, "changed_by")


def state_to_pb(state: ScheduleState) -> pb.ScheduleState:
    message = pb.ScheduleState(schedule=state.schedule, paused=state.paused, paused_state_changed_by=state.changed_by)
    if state.changed_time is not None:
        message.paused_state_time.CopyFrom(timestamp_to_pb(state.changed_time))
    if state.last_tick is not None:
        message.last_tick_time.CopyFrom(timestamp_to_pb(state.last_tick.tick_time))
        message.last_run_id = state.last_tick.run_id
        message.last_replica = state.last_tick.replica
    return message
