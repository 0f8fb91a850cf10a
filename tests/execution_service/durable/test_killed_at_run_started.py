"""A replica SIGKILLed right after its client received RunStarted, while the run's setup is slow (an MCP server that
takes seconds to start, as an npx server downloading itself does): RunStarted was journaled before the client saw
it, so another replica finds the run at once (WatchRun, CancelRun answer; before, NOT_FOUND until a survivor took
it over), and the run's record marks its resumption (real replicas, PostgreSQL, the fake Gemini)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeResponse
from tests.support.replicas import execution_database, running_cluster
from tests.support.stack import REPO, agent_source, mcp_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]

RAW_SERVER = REPO / "tests" / "fixtures" / "mcp_raw_server.py"
AGENTS = {"worker": agent_source(model="gemini-2.5-flash", tools=["slow/echo"], limits={"run_timeout": "200s"})}


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


async def test_a_replica_killed_at_run_started_leaves_a_run_the_others_find(tmp_path: Path, database_url: str) -> None:
    takeover = {"AGENTRUN_HEARTBEAT_INTERVAL_S": "1", "AGENTRUN_TAKEOVER_TIMEOUT_S": "12"}
    async with running_cluster(tmp_path, database_url, AGENTS, **takeover) as cluster:
        slow = {"command": sys.executable, "args": [str(RAW_SERVER)], "env": {"RAW_SLOW_INITIALIZE_S": "5"}}
        (tmp_path / "mcp.json").write_text(json.dumps(mcp_config({"slow": slow})))
        cluster.gemini.set_responder(lambda body: FakeResponse(text="done"))
        first = await cluster.start_replica("ra")
        call = cluster.stub(first).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go"))
        run_id = ""
        async for event in call:
            if event.WhichOneof("event") == "run_started":
                run_id = event.run_started.run_id
                break
        first.kill()  # while the slow MCP server starts: before the run's first model call
        call.cancel()
        second = await cluster.start_replica("rb")

        # Found at once through the other replica (before: NOT_FOUND, its stream had no RunStarted).
        watched = [event async for event in cluster.stub(second).WatchRun(ex.WatchRunRequest(run_id=run_id))]
        kinds = [event.WhichOneof("event") for event in watched]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished", kinds
        assert watched[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED, watched[-1].run_finished.error
        payloads = [event.step.WhichOneof("payload") for event in watched if event.WhichOneof("event") == "step"]
        assert payloads[0] == "resumed", payloads  # the resumption is marked (before: no resumed step)
        resumed = next(event.step.resumed for event in watched if event.WhichOneof("event") == "step")
        assert (resumed.previous_replica, resumed.replica) == ("ra", "rb")
