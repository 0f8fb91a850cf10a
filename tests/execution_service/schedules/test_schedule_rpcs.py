"""ListSchedules / PauseSchedule / ResumeSchedule and the RunsService schedule RPCs with authentication on: who may
do what, and a clear status for every bad request."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import runs_service_pb2 as rs
from google.protobuf.timestamp_pb2 import Timestamp
from typer.testing import CliRunner

from agentrun_cli.main import app
from agentrun_core.ids import new_run_id
from tests.security.support import secure_stack, status_of
from tests.support.auth import ADMIN, ALICE, SERVICE
from tests.support.stack import agent_source

AGENTS = {
    "reporter": agent_source(
        extra_front_matter="""schedule:
  - name: morning
    cron: "0 7 * * *"
    timezone: Europe/Paris
    task: Morning report
  - name: evening
    cron: "0 19 * * *"
    task: Evening report"""
    ),
    "plain": agent_source(),
}


def now_stamp() -> Timestamp:
    value = Timestamp()
    value.FromDatetime(datetime.now(UTC))
    return value


async def test_pausing_is_for_admins_and_names_what_exists(tmp_path: Path) -> None:
    async with secure_stack(tmp_path, AGENTS, scheduler_enabled=False) as stack:
        alice, admin = stack.execution_stub(ALICE), stack.execution_stub(ADMIN)
        code, details = await status_of(lambda: alice.PauseSchedule(ex.PauseScheduleRequest(agent_name="reporter")))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "only admins may pause schedules" in details
        for request, expected in [
            (
                ex.PauseScheduleRequest(agent_name="nobody"),
                "agent 'nobody' not found (or its file does not load: agentrun agents list)",
            ),
            (ex.PauseScheduleRequest(agent_name="plain"), "agent 'plain' declares no schedule"),
            (
                ex.PauseScheduleRequest(agent_name="reporter", schedule_name="noon"),
                "agent 'reporter' has no schedule 'noon'; its schedules: morning, evening",
            ),
        ]:
            code, details = await status_of(lambda r=request: admin.PauseSchedule(r))  # type: ignore[misc]
            assert (code, details) == (grpc.StatusCode.NOT_FOUND, expected)
        code, details = await status_of(lambda: admin.PauseSchedule(ex.PauseScheduleRequest()))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "agent_name" in details

        paused = await admin.PauseSchedule(ex.PauseScheduleRequest(agent_name="reporter", schedule_name="morning"))
        assert [(s.name, s.paused, s.paused_state_changed_by) for s in paused.schedules] == [("morning", True, "root")]
        # Anyone may list; the state is RunsService's.
        listed = await alice.ListSchedules(ex.ListSchedulesRequest(agent_name="reporter", next_fire_time_count=2))
        by_name = {s.name: s for s in listed.schedules}
        assert by_name["morning"].paused and not by_name["morning"].next_fire_times
        assert not by_name["evening"].paused and len(by_name["evening"].next_fire_times) == 2
        assert by_name["evening"].next_fire_times[0].ToDatetime(UTC).hour == 19
        code, details = await status_of(lambda: alice.ListSchedules(ex.ListSchedulesRequest(next_fire_time_count=-1)))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "next_fire_time_count" in details

        # The CLI resumes every schedule of the agent.
        result = await asyncio.to_thread(
            CliRunner().invoke,
            app,
            ["--execution-target", stack.execution_address, "--token", ADMIN, "schedules", "resume", "reporter"],
        )
        assert result.exit_code == 0, result.output
        assert "reporter/morning: active" in result.output and "reporter/evening: active" in result.output
        bad = await asyncio.to_thread(
            CliRunner().invoke, app, ["--execution-target", stack.execution_address, "schedules", "pause", "a/b/c"]
        )
        assert bad.exit_code == 2 and "is not AGENT or AGENT/NAME" in bad.output

        # Without RunsService there is no shared state to show: UNAVAILABLE, not a guess.
        assert stack.runs is not None
        await stack.runs.stop(0)
        stack.runs = None
        code, details = await status_of(lambda: alice.ListSchedules(ex.ListSchedulesRequest()))
        assert code == grpc.StatusCode.UNAVAILABLE and "RunsService cannot read schedule states" in details


async def test_runs_service_schedule_rpcs_are_for_the_execution_service(tmp_path: Path) -> None:
    async with secure_stack(tmp_path, AGENTS, scheduler_enabled=False) as stack:
        alice, service = stack.runs_stub(ALICE), stack.runs_stub(SERVICE)
        claim = rs.ClaimScheduleTickRequest(
            schedule="reporter/morning", tick_time=now_stamp(), replica="r1", run_id=new_run_id()
        )
        for call in (
            lambda: alice.ClaimScheduleTick(claim),
            lambda: alice.ListScheduleStates(rs.ListScheduleStatesRequest()),
            lambda: alice.SetSchedulePaused(rs.SetSchedulePausedRequest(schedule="reporter/morning", paused=True)),
        ):
            code, details = await status_of(call)
            assert code == grpc.StatusCode.PERMISSION_DENIED and "reserved to the execution service" in details
        for request, field in [
            (rs.ClaimScheduleTickRequest(schedule="reporter", tick_time=now_stamp(), run_id=new_run_id()), "schedule"),
            (rs.ClaimScheduleTickRequest(schedule="reporter/morning", run_id=new_run_id()), "tick_time"),
            (rs.ClaimScheduleTickRequest(schedule="reporter/morning", tick_time=now_stamp(), run_id="x"), "run_id"),
        ]:
            code, details = await status_of(lambda r=request: service.ClaimScheduleTick(r))  # type: ignore[misc]
            assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(f"{field}: ")
        first = await service.ClaimScheduleTick(claim)
        again = await service.ClaimScheduleTick(
            rs.ClaimScheduleTickRequest(
                schedule="reporter/morning", tick_time=claim.tick_time, replica="r2", run_id=new_run_id()
            )
        )
        assert first.outcome == rs.SCHEDULE_TICK_CLAIM_CLAIMED and first.run_id == claim.run_id
        assert again.outcome == rs.SCHEDULE_TICK_CLAIM_ALREADY_CLAIMED
        assert (again.run_id, again.replica) == (claim.run_id, "r1")
