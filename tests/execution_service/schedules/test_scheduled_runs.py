"""Scheduled runs end to end: ExecutionService replicas as separate processes sharing one RunsService.

- Two replicas, an every-two-seconds schedule: each tick is one stored run, labelled with its schedule and tick.
- A schedule paused (in RunsService, for every replica) starts nothing; resumed, it runs again, and the ticks
  that passed while it was paused are not run.
- `agentrun schedules list` shows each schedule's state and next fire times; a bad cron is a broken agent.
- Missed ticks: a replica started after a tick passed with no replica running runs it late once, or skips it, as
  each schedule says.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from google.protobuf.timestamp_pb2 import Timestamp
from typer.testing import CliRunner, Result

from agentrun_cli.main import app
from agentrun_core.auth import AuthSettings
from agentrun_core.ids import new_run_id
from execution_service.schedules.cron import CronTimes
from runs_service.config import RunsSettings
from runs_service.server import RunningRunsServer
from runs_service.server import start_server as start_runs
from tests.support.stack import agent_source, free_port, write_agents


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    target: str
    channel: grpc.aio.Channel

    @property
    def stub(self) -> ex_grpc.ExecutionServiceStub:
        return ex_grpc.ExecutionServiceStub(self.channel)


@asynccontextmanager
async def runs_service(tmp_path: Path) -> AsyncIterator[tuple[RunningRunsServer, rs_grpc.RunsServiceStub]]:
    port = free_port()
    server = await start_runs(
        RunsSettings(
            listen_address=f"127.0.0.1:{port}",
            data_dir=tmp_path / "runs",
            migrate_on_start=True,
            auth=AuthSettings.off(),
        )
    )
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield server, rs_grpc.RunsServiceStub(channel)
    finally:
        await channel.close()
        await server.stop(0)


@asynccontextmanager
async def replicas(tmp_path: Path, runs: RunningRunsServer, names: list[str]) -> AsyncIterator[list[Replica]]:
    """ExecutionService processes on the agents in tmp_path/agents, each with its own data directory."""
    (tmp_path / "mcp.json").write_text(json.dumps({"mcpServers": {}}))
    started: list[Replica] = []
    try:
        for name in names:
            port = free_port()
            env = {
                **os.environ,
                "AGENTRUN_EXECUTION_ADDRESS": f"127.0.0.1:{port}",
                "AGENTRUN_RUNS_SERVICE_TARGET": f"127.0.0.1:{runs.port}",
                "AGENTRUN_AGENTS_DIR": str(tmp_path / "agents"),
                "AGENTRUN_MCP_CONFIG": str(tmp_path / "mcp.json"),
                "AGENTRUN_DATA_DIR": str(tmp_path / name),
                "AGENTRUN_REPLICA_ID": name,
                "AGENTRUN_LOG_FORMAT": "json",
                "AGENTRUN_AUTH": "off",
            }
            process = subprocess.Popen(
                [sys.executable, "-m", "execution_service"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=(tmp_path / f"{name}.log").open("wb"),
            )
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            started.append(Replica(process, f"127.0.0.1:{port}", channel))
        for replica in started:
            await asyncio.wait_for(replica.channel.channel_ready(), 60)
        yield started
    finally:
        await stop(started)


async def stop(started: list[Replica]) -> None:
    """SIGTERM: each replica stops its scheduler, lets its runs end and delivers their records."""
    for replica in started:
        if replica.process.poll() is None:
            replica.process.send_signal(signal.SIGTERM)
    for replica in started:
        try:
            await asyncio.to_thread(replica.process.wait, 30)
        except subprocess.TimeoutExpired:
            replica.process.kill()
        await replica.channel.close()


async def scheduled_runs(stub: rs_grpc.RunsServiceStub, schedule: str) -> list[run_pb2.Run]:
    listed = await stub.ListRuns(
        rs.ListRunsRequest(filter=f'labels.agentrun.schedule = "{schedule}"', page_size=1000, order_by="start_time")
    )
    return list(listed.runs)


async def wait_for_runs(stub: rs_grpc.RunsServiceStub, schedule: str, count: int, timeout_s: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(await scheduled_runs(stub, schedule)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"fewer than {count} runs of {schedule} in time"
        await asyncio.sleep(0.3)


def tick_of(run: run_pb2.Run) -> datetime:
    return datetime.fromisoformat(run.labels["agentrun.schedule_tick"])


async def cli(args: list[str]) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, app, args)


def stamp(moment: datetime) -> Timestamp:
    value = Timestamp()
    value.FromDatetime(moment)
    return value


TICKER = agent_source(
    extra_front_matter="""schedule:
  - name: every2s
    cron: "*/2 * * * * *"
    task: What is new?
    labels: {team: qa}"""
)
HELD = agent_source(extra_front_matter='schedule:\n  - name: often\n    cron: "* * * * * *"\n    task: Hello')
BROKEN = agent_source(extra_front_matter='schedule:\n  - cron: "61 * * * *"\n    task: Never')


async def test_each_tick_is_one_run_with_two_replicas_and_a_paused_schedule_does_not_fire(tmp_path: Path) -> None:
    write_agents(tmp_path / "agents", {"ticker": TICKER, "held": HELD, "broken": BROKEN})
    async with runs_service(tmp_path) as (runs, runs_stub):
        # Paused before any replica starts: the state every replica reads is RunsService's.
        await runs_stub.SetSchedulePaused(rs.SetSchedulePausedRequest(schedule="held/often", paused=True))
        async with replicas(tmp_path, runs, ["replica-1", "replica-2"]) as (first, second):
            agents = await first.stub.ListAgents(ex.ListAgentsRequest())
            assert [a.name for a in agents.agents] == ["held", "ticker"]
            (broken,) = agents.errors
            assert broken.path.endswith("broken.prompt")
            assert broken.message.startswith("schedule[0].cron: cron '61 * * * *' is not a valid cron expression")

            # The CLI in a thread: this event loop serves RunsService, which the replicas ask.
            listed = await cli(["--execution-target", second.target, "schedules", "list", "--json"])
            assert listed.exit_code == 0, listed.output
            schedules = {f"{s['agentName']}/{s['name']}": s for s in json.loads(listed.output)["schedules"]}
            assert sorted(schedules) == ["held/often", "ticker/every2s"]
            assert schedules["held/often"]["paused"] is True and schedules["held/often"].get("nextFireTimes", []) == []
            next_times = [datetime.fromisoformat(t) for t in schedules["ticker/every2s"]["nextFireTimes"]]
            assert len(next_times) == 3 and next_times[0] > datetime.now(UTC) - timedelta(seconds=5)
            assert [t.second % 2 for t in next_times] == [0, 0, 0]
            assert [(b - a).total_seconds() for a, b in itertools.pairwise(next_times)] == [2, 2]
            table = await cli(["--execution-target", first.target, "schedules", "list"])
            assert table.exit_code == 0, table.output
            assert "held/often" in table.output and "paused" in table.output and "*/2 * * * * *" in table.output
            assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d[02468]Z", table.output)

            await wait_for_runs(runs_stub, "ticker/every2s", 4)
            assert await scheduled_runs(runs_stub, "held/often") == []

            resumed_at = datetime.now(UTC)
            resumed = await second.stub.ResumeSchedule(ex.ResumeScheduleRequest(agent_name="held"))
            assert [(s.name, s.paused) for s in resumed.schedules] == [("often", False)]
            await wait_for_runs(runs_stub, "held/often", 2)
        # Both replicas stopped: every run they started is stored.
        ticker_runs = await scheduled_runs(runs_stub, "ticker/every2s")
        held_runs = await scheduled_runs(runs_stub, "held/often")

    ticks = [tick_of(r) for r in ticker_runs]
    assert len(ticks) >= 4
    assert len(set(ticks)) == len(ticks), f"a tick started more than one run: {sorted(ticks)}"
    assert all(t.second % 2 == 0 and t.microsecond == 0 for t in ticks)
    for run in ticker_runs:
        assert run.status == run_pb2.RUN_STATUS_COMPLETED
        assert run.agent_name == "ticker" and run.task == "What is new?" and run.user == "scheduler"
        assert run.labels["team"] == "qa" and run.labels["agentrun.schedule"] == "ticker/every2s"
        assert run.start_time.ToDatetime(UTC) >= tick_of(run)
    held_ticks = [tick_of(r) for r in held_runs]
    assert len(set(held_ticks)) == len(held_ticks)
    # Nothing ran for the ticks that passed while the schedule was paused.
    assert min(held_ticks) > resumed_at - timedelta(seconds=1)


async def test_a_missed_tick_runs_late_once_or_is_skipped_as_the_schedule_says(tmp_path: Path) -> None:
    # A daily tick about twelve hours ago, that no replica ran; the next is about twelve hours away.
    now = datetime.now(UTC)
    cron = f"{now.minute} {(now.hour + 12) % 24} * * *"
    missed_tick = CronTimes(cron).latest_at_or_before(now)
    assert now - missed_tick > timedelta(hours=11)
    write_agents(
        tmp_path / "agents",
        {
            "late": agent_source(
                extra_front_matter=f'schedule:\n  - cron: "{cron}"\n    task: Catch up\n    missed: run_late_once'
            ),
            "skipper": agent_source(
                extra_front_matter=f'schedule:\n  - cron: "{cron}"\n    task: Skip\n    missed: skip'
            ),
        },
    )
    async with runs_service(tmp_path) as (runs, runs_stub):
        # Both schedules ran the day before, then nothing ran until now.
        day_before = missed_tick - timedelta(days=1)
        for schedule in ("late/default", "skipper/default"):
            claimed = await runs_stub.ClaimScheduleTick(
                rs.ClaimScheduleTickRequest(
                    schedule=schedule, tick_time=stamp(day_before), replica="gone", run_id=new_run_id()
                )
            )
            assert claimed.outcome == rs.SCHEDULE_TICK_CLAIM_CLAIMED
        async with replicas(tmp_path, runs, ["replica-1"]) as (replica,):
            await wait_for_runs(runs_stub, "late/default", 1)
            listed = await replica.stub.ListSchedules(ex.ListSchedulesRequest())
        (late_run,) = await scheduled_runs(runs_stub, "late/default")
        assert tick_of(late_run) == missed_tick
        assert late_run.start_time.ToDatetime(UTC) - missed_tick > timedelta(hours=11)  # it ran late
        assert late_run.status == run_pb2.RUN_STATUS_COMPLETED
        # The same round skipped the other schedule's tick: no run, and its last claimed tick is still the old one.
        assert await scheduled_runs(runs_stub, "skipper/default") == []
        states = await runs_stub.ListScheduleStates(rs.ListScheduleStatesRequest())
        last_ticks = {s.schedule: s.last_tick_time.ToDatetime(UTC) for s in states.states}
        assert last_ticks == {"late/default": missed_tick, "skipper/default": day_before}
        by_name = {s.agent_name: s for s in listed.schedules}
        assert by_name["late"].missed_ticks == ex.MISSED_TICK_POLICY_RUN_LATE_ONCE
        assert by_name["late"].last_run_id == late_run.id
        assert by_name["skipper"].next_fire_times[0].ToDatetime(UTC) == missed_tick + timedelta(days=1)
