"""Durable mode with a real replica: a run whose workflow fails ends FAILED instead of staying RUNNING. The failure
is provoked from outside: the replica is SIGKILLed mid-run and restarted with an MCP configuration that no longer has
the run's tools, so the resumed run cannot replay its recorded execution."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.execution_service.durable.test_replicas import (
    AGENTS,
    assert_exactly_once_in_order,
    sleep_in_flight,
    two_tools_then_answer,
    until_sleep_started,
    watch_rest,
)
from tests.support.replicas import running_cluster
from tests.support.stack import TEST_MCP_SERVER, mcp_config

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]


def without_the_test_server(tmp: Path) -> None:
    """The MCP configuration the replicas read, with the server of the run's tools under another name."""
    config = mcp_config({"other": {"command": sys.executable, "args": [str(TEST_MCP_SERVER)]}})
    del config["mcpServers"]["test"]
    (tmp / "mcp.json").write_text(json.dumps(config))


async def test_a_resumed_run_that_diverges_ends_failed_in_the_stream_and_in_runs_service(
    tmp_path: Path, database_url: str
) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=60.0))
        a = await cluster.start_replica("replica-f")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
        run_id, seen = await until_sleep_started(stream)
        await sleep_in_flight(cluster)
        a.kill()

        without_the_test_server(tmp_path)
        again = await cluster.start_replica("replica-f", port=a.port)
        rest = await watch_rest(cluster, again, run_id, seen[-1].sequence + 1)

        finished = rest[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED
        assert finished.error.reason == "DURABLE_REPLAY_DIVERGED"
        assert "replica-f could not resume the run" in finished.error.message
        assert finished.recorded
        later = [e.step for e in rest if e.WhichOneof("event") == "step"]
        assert [s.WhichOneof("payload") for s in later] == ["error"]
        assert later[0].error.reason == "DURABLE_REPLAY_DIVERGED"

        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_FAILED
        assert stored.error.reason == "DURABLE_REPLAY_DIVERGED" and stored.error.message == finished.error.message
        assert_exactly_once_in_order(seen + later, stored)
        assert stored.steps_taken == 2 and list(stored.tools_used) == ["echo", "sleep"]
        # Nothing was called again: the two model calls made before the kill, the echo and the sleep in flight.
        assert len(cluster.gemini.requests) == 2
        assert [c["tool"] for c in cluster.calls()] == ["echo", "sleep"]
        log = again.log()
        assert "a durable run's workflow failed; the run ends FAILED" in log and run_id in log
