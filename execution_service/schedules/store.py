"""What replicas share about schedules, through RunsService: tick claims and pause state (its database is the one
thing every ExecutionService replica shares). Domain values in and out; RunsServiceUnavailable when it cannot
answer."""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import grpc
from agentrun.runs.v1 import runs_service_pb2 as pb
from agentrun.runs.v1 import runs_service_pb2_grpc as pb_grpc

from agentrun_core.proto_convert import timestamp_from_pb, timestamp_to_pb
from execution_service.errors import RunsServiceUnavailable

log = logging.getLogger(__name__)

R = TypeVar("R")


class Claim(enum.Enum):
    CLAIMED = "claimed"
    ALREADY_CLAIMED = "already_claimed"
    PAUSED = "paused"


_CLAIMS = {
    pb.SCHEDULE_TICK_CLAIM_CLAIMED: Claim.CLAIMED,
    pb.SCHEDULE_TICK_CLAIM_ALREADY_CLAIMED: Claim.ALREADY_CLAIMED,
    pb.SCHEDULE_TICK_CLAIM_PAUSED: Claim.PAUSED,
}


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    claim: Claim
    # The claim's run id and replica (ours when CLAIMED, the earlier claimer's when ALREADY_CLAIMED).
    run_id: str = ""
    replica: str = ""


@dataclass(frozen=True, slots=True)
class StoredState:
    """A schedule's shared state (the default value: never paused nor claimed)."""

    paused: bool = False
    changed_by: str = ""
    changed_time: datetime | None = None
    last_tick: datetime | None = None
    last_run_id: str = ""


class ScheduleStore:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        call_metadata: Callable[[], Sequence[tuple[str, str]]],
        *,
        timeout_s: float = 5.0,
    ) -> None:
        self._stub = pb_grpc.RunsServiceStub(channel)
        self._call_metadata = call_metadata
        self._timeout_s = timeout_s

    async def claim(self, schedule: str, tick: datetime, run_id: str, replica: str) -> ClaimAnswer:
        request = pb.ClaimScheduleTickRequest(
            schedule=schedule, tick_time=timestamp_to_pb(tick), replica=replica, run_id=run_id
        )
        reply = await self._answer("claim a tick", self._stub.ClaimScheduleTick(request, **self._options()))
        claim = _CLAIMS.get(reply.outcome)
        if claim is None:
            raise RunsServiceUnavailable(f"RunsService answered the claim with an unknown outcome ({reply.outcome})")
        return ClaimAnswer(claim, reply.run_id, reply.replica)

    async def states(self, schedules: Sequence[str]) -> dict[str, StoredState]:
        """The state of each of `schedules` (all when empty) that has one."""
        request = pb.ListScheduleStatesRequest(schedules=schedules)
        reply = await self._answer("read schedule states", self._stub.ListScheduleStates(request, **self._options()))
        return {state.schedule: _state_from_pb(state) for state in reply.states}

    async def set_paused(self, schedule: str, paused: bool, changed_by: str) -> StoredState:
        request = pb.SetSchedulePausedRequest(schedule=schedule, paused=paused, changed_by=changed_by)
        reply = await self._answer(
            "pause or resume a schedule", self._stub.SetSchedulePaused(request, **self._options())
        )
        return _state_from_pb(reply.state)

    def _options(self) -> dict[str, Any]:
        return {"metadata": tuple(self._call_metadata()), "timeout": self._timeout_s}

    async def _answer(self, what: str, call: Awaitable[R]) -> R:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            log.warning(
                "RunsService did not answer: cannot %s", what, extra={"code": exc.code().name, "error": exc.details()}
            )
            raise RunsServiceUnavailable(
                f"RunsService cannot {what} ({exc.code().name}: {exc.details()}); schedules need it, retry later"
            ) from None


def _state_from_pb(state: pb.ScheduleState) -> StoredState:
    return StoredState(
        paused=state.paused,
        changed_by=state.paused_state_changed_by,
        changed_time=timestamp_from_pb(state.paused_state_time) if state.HasField("paused_state_time") else None,
        last_tick=timestamp_from_pb(state.last_tick_time) if state.HasField("last_tick_time") else None,
        last_run_id=state.last_run_id,
    )
