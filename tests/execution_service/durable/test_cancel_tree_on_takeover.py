"""Cancelling a parent run while the replica that ran it (and its sub-agent's run) is dead: once a survivor takes
both over, the child ends CANCELLED with its parent instead of resuming and running on to its end (real replicas,
PostgreSQL, the fake Gemini, the MCP test server's call log)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, function_results_in
from tests.support.replicas import execution_database, running_cluster
from tests.support.stack import agent_named_in, named_agent_source, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "gemini-2.5-flash"
AGENTS = {
    name: named_agent_source(name, model=MODEL, tools=tools, limits={"tool_timeout": "60s", "run_timeout": "300s"})
    for name, tools in (("boss", ["agents/helper"]), ("helper", ["test/sleep"]))
}
NAP_S = 20


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


def turn_of(body: dict[str, Any]) -> tuple[str, int]:
    return (agent_named_in(body), function_results_in(body))


def respond(body: dict[str, Any]) -> FakeResponse:
    match turn_of(body):
        case ("boss", 0):
            return FakeResponse(function_calls=[FakeFunctionCall("helper", {"task": "nap"}, id="c-help")])
        case ("helper", 0):
            return FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": NAP_S}, id="s1")])
        case (agent, _):
            return FakeResponse(text=f"{agent} done")


async def test_a_parent_cancelled_while_its_replica_is_dead_ends_its_child_too(
    tmp_path: Path, database_url: str
) -> None:
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="4"
    ) as cluster:
        cluster.gemini.set_responder(respond)
        a = await cluster.start_replica("replica-a")
        b = await cluster.start_replica("replica-b")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="go", detach=True))
        started = (await stream.read()).run_started
        run_id = started.run_id
        stream.cancel()
        # The shared queue gave the parent to either replica (its child runs beside it): that one dies.
        executing, survivor = (a, b) if started.replica == a.name else (b, a)
        await wait_for(lambda: any(c["tool"] == "sleep" for c in cluster.calls()), timeout_s=30)
        executing.kill()
        await cluster.stub(survivor).CancelRun(ex.CancelRunRequest(run_id=run_id), timeout=30)

        parent = await cluster.stored_run(run_id)
        assert parent.status == run_pb2.RUN_STATUS_CANCELLED
        tree = await cluster.runs_stub().GetRun(rs.GetRunRequest(run_id=run_id, include_descendants=True))
        (child_id,) = [d.id for d in tree.descendants]
        child = await cluster.stored_run(child_id, timeout_s=NAP_S / 2)  # not after a repeated 20 s nap
        assert child.status == run_pb2.RUN_STATUS_CANCELLED, child.status
        await asyncio.sleep(2)
        asked = [turn_of(request.body) for request in cluster.gemini.requests]
        assert asked == [("boss", 0), ("helper", 0)], asked  # neither went on to its next turn
