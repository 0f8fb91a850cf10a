"""What a draining durable replica still starts (real replicas, PostgreSQL, the fake Gemini): a drain must not change
a run's result nor lose a schedule's tick.

- A sub-agent called by a run that the drain lets finish starts (the parent's tool call gets the child's answer, not
  "the execution service is shutting down").
- A schedule tick that DBOS hands to the draining replica still gets its run: it enters the shared queue and the
  other replica runs it (before, the tick was claimed and then refused: no run for it, ever).
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, function_results_in
from tests.support.replicas import execution_database, running_cluster
from tests.support.stack import agent_named_in, named_agent_source

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "gemini-2.5-flash"
LIMITS = {"tool_timeout": "60s", "run_timeout": "300s"}


def _agent(name: str, tools: list[str], extra: str = "") -> str:
    return named_agent_source(name, model=MODEL, tools=tools, limits=LIMITS, extra_front_matter=extra)


AGENTS = {
    "boss": _agent("boss", ["agents/helper"]),
    "helper": _agent("helper", []),
    "ticker": _agent("ticker", [], 'schedule:\n  - name: every1s\n    cron: "* * * * * *"\n    task: Tick'),
}
BOSS_FIRST_CALL_S = 3.0  # the drain begins while it is in flight; its answer asks for the helper
HELPER_CALL_S = 8.0  # keeps the drain going while the ticks come


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


def respond(body: dict[str, Any]) -> FakeResponse:
    agent = agent_named_in(body)
    if agent == "boss":
        if function_results_in(body) == 0:
            call = FakeFunctionCall("helper", {"task": "help me"}, id="c-help")
            return FakeResponse(function_calls=[call], delay_s=BOSS_FIRST_CALL_S)
        return FakeResponse(text="boss done")
    if agent == "helper":
        return FakeResponse(text="helper done", delay_s=HELPER_CALL_S)
    return FakeResponse(text="tock")


async def test_a_draining_replica_starts_sub_agents_and_hands_its_ticks_on(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_SHUTDOWN_GRACE_S="30", AGENTRUN_SCHEDULER_REFRESH_S="1"
    ) as cluster:
        cluster.gemini.set_responder(respond)
        a = await cluster.start_replica("replica-a")
        b = await cluster.start_replica("replica-b")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="plan", detach=True))
        started = (await stream.read()).run_started
        stream.cancel()
        draining, other = (a, b) if started.replica == a.name else (b, a)
        await asyncio.sleep(1.0)  # the boss's first model call is in flight
        drain_began = datetime.now().astimezone()
        draining.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(draining.process.wait, 60) == 0
        drain_ended = datetime.now().astimezone()

        boss = await cluster.stored_run(started.run_id)
        assert boss.status == run_pb2.RUN_STATUS_COMPLETED and boss.final_response == "boss done"
        (call,) = boss.tool_calls
        assert not call.is_error and "helper done" in call.result, call.result
        listed = await cluster.runs_stub().ListRuns(rs.ListRunsRequest(filter=f'parent_run_id = "{boss.id}"'))
        (helper,) = listed.runs
        assert helper.status == run_pb2.RUN_STATUS_COMPLETED

        await asyncio.sleep(3)  # the ticks of the drain's last seconds get their runs on the other replica
        other.stop()
        listed = await cluster.runs_stub().ListRuns(
            rs.ListRunsRequest(filter='labels.agentrun.schedule = "ticker/every1s"', page_size=1000)
        )
        ticks = Counter(datetime.fromisoformat(r.labels["agentrun.schedule_tick"]) for r in listed.runs)
        assert not [t for t, n in ticks.items() if n > 1], "a tick started more than one run"
        first, last = min(ticks), max(ticks)
        assert first < drain_began and last > drain_ended, (first, last, drain_began, drain_ended)
        every_tick = [first + timedelta(seconds=s) for s in range(int((last - first).total_seconds()) + 1)]
        missing = [t.time().isoformat() for t in every_tick if t not in ticks]
        assert not missing, f"ticks without a run: {missing}"
        # Not vacuous: DBOS handed the draining replica ticks during its drain, and it passed them on.
        during_drain = draining.log().split("draining: NOT_SERVING", 1)[-1]
        assert "could not start" not in during_drain
        assert "scheduled run started" in draining.log().split("draining: NOT_SERVING", 1)[-1]
