"""Schedules in the durable mode: DBOS scheduled workflows on PostgreSQL fire each tick once, whichever of two
replica processes runs it; pausing (RunsService's state, mirrored into DBOS) stops the ticks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from google.protobuf.timestamp_pb2 import Timestamp

from agentrun_core.ids import new_run_id
from execution_service.schedules.cron import CronTimes
from tests.support.replicas import execution_database, running_cluster
from tests.support.stack import agent_source

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = {
    "ticker": agent_source(
        extra_front_matter='schedule:\n  - name: every2s\n    cron: "*/2 * * * * *"\n    task: What is new?'
    )
}


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


async def scheduled_runs(stub: rs_grpc.RunsServiceStub) -> list[run_pb2.Run]:
    listed = await stub.ListRuns(
        rs.ListRunsRequest(filter='labels.agentrun.schedule = "ticker/every2s"', page_size=1000, order_by="start_time")
    )
    return list(listed.runs)


async def wait_for_count(stub: rs_grpc.RunsServiceStub, count: int, timeout_s: float = 90) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(await scheduled_runs(stub)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {count} scheduled runs in time"
        await asyncio.sleep(0.3)


def tick_of(run: run_pb2.Run) -> datetime:
    return datetime.fromisoformat(run.labels["agentrun.schedule_tick"])


async def test_dbos_schedules_fire_each_tick_once_and_stop_when_paused(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS, AGENTRUN_SCHEDULER_REFRESH_S="1") as cluster:
        a = await cluster.start_replica("replica-a")
        b = await cluster.start_replica("replica-b")
        runs_stub = cluster.runs_stub()
        await wait_for_count(runs_stub, 4)

        paused = await cluster.stub(b).PauseSchedule(ex.PauseScheduleRequest(agent_name="ticker"))
        assert [s.paused for s in paused.schedules] == [True]
        paused_at = datetime.now(UTC)
        await asyncio.sleep(6)  # a pause reaches DBOS within AGENTRUN_SCHEDULER_REFRESH_S; claims refuse it at once
        runs = await scheduled_runs(runs_stub)
        ticks = [tick_of(r) for r in runs]
        assert len(set(ticks)) == len(ticks), f"a tick started more than one run: {sorted(ticks)}"
        assert all(t.second % 2 == 0 for t in ticks)
        assert max(ticks) < paused_at + timedelta(seconds=1)
        for run in runs:
            stored = await cluster.stored_run(run.id)
            assert stored.status == run_pb2.RUN_STATUS_COMPLETED and stored.user == "scheduler"
        # The ticks ran as DBOS scheduled workflows (the embedded loop is not running in this mode).
        logs = a.log() + b.log()
        assert "schedules on DBOS (durable mode)" in logs and "scheduler started" not in logs


async def test_dbos_backfills_the_latest_missed_tick_once_for_run_late_once(tmp_path: Path, database_url: str) -> None:
    now = datetime.now(UTC)
    cron = f"{now.minute} {(now.hour + 12) % 24} * * *"
    missed_tick = CronTimes(cron).latest_at_or_before(now)
    agents = {
        "late": agent_source(
            extra_front_matter=f'schedule:\n  - cron: "{cron}"\n    task: Catch up\n    missed: run_late_once'
        ),
        "skipper": agent_source(extra_front_matter=f'schedule:\n  - cron: "{cron}"\n    task: Skip\n    missed: skip'),
    }
    async with running_cluster(tmp_path, database_url, agents, AGENTRUN_SCHEDULER_REFRESH_S="1") as cluster:
        runs_stub = cluster.runs_stub()
        for schedule in ("late/default", "skipper/default"):
            await runs_stub.ClaimScheduleTick(
                rs.ClaimScheduleTickRequest(
                    schedule=schedule,
                    tick_time=stamp(missed_tick - timedelta(days=1)),
                    replica="gone",
                    run_id=new_run_id(),
                )
            )
        await cluster.start_replica("replica-a")
        await cluster.start_replica("replica-b")
        deadline = asyncio.get_running_loop().time() + 60
        while not await runs_of(runs_stub, "late/default"):
            assert asyncio.get_running_loop().time() < deadline, "the late tick did not run"
            await asyncio.sleep(0.3)
        await asyncio.sleep(3)  # both replicas backfilled it (every second): still one run
        (late_run,) = await runs_of(runs_stub, "late/default")
        assert tick_of(late_run) == missed_tick
        assert await runs_of(runs_stub, "skipper/default") == []
        assert (await cluster.stored_run(late_run.id)).status == run_pb2.RUN_STATUS_COMPLETED


async def runs_of(stub: rs_grpc.RunsServiceStub, schedule: str) -> list[run_pb2.Run]:
    listed = await stub.ListRuns(rs.ListRunsRequest(filter=f'labels.agentrun.schedule = "{schedule}"', page_size=100))
    return list(listed.runs)


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value
