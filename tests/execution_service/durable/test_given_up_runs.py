"""A run whose workflow DBOS gives up on (every execution ended its replica's process, past the workflow's recovery
limit) ends FAILED DURABLE_RECOVERY_EXHAUSTED instead of staying RUNNING: stored with the steps its stream held, and
its watchers get the end. Real replica processes; the crashes are the replica's SIGKILL, and the earlier ones are
written into DBOS's recovery count (100 crashing recoveries would take minutes)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.execution_service.durable.test_replicas import (
    AGENTS,
    sleep_in_flight,
    two_tools_then_answer,
    until_sleep_started,
    watch_rest,
)
from tests.support.replicas import execution_database, running_cluster
from tests.support.stack import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


async def test_a_run_dbos_gave_up_on_ends_failed_and_stored(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_GIVEN_UP_CHECK_INTERVAL_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="600"
    ) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=30.0))
        a = await cluster.start_replica("replica-g")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
        run_id, seen = await until_sleep_started(stream)
        await sleep_in_flight(cluster)
        a.kill()
        # The run's earlier executions all crashed their replica: its recovery count is at DBOS's limit (100).
        with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            updated = conn.execute(
                "UPDATE dbos.workflow_status SET recovery_attempts = 101 WHERE workflow_uuid = %s", (run_id,)
            ).rowcount
        assert updated == 1

        # The restarted replica's recovery is one too many: DBOS gives the workflow up; a replica ends the run.
        again = await cluster.start_replica("replica-g", port=a.port)
        async with asyncio.timeout(60):  # without the end, the stream would never finish
            rest = await watch_rest(cluster, again, run_id, seen[-1].sequence + 1)
        assert rest[-1].WhichOneof("event") == "run_finished", rest
        finished = rest[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED
        assert finished.error.reason == "DURABLE_RECOVERY_EXHAUSTED"
        assert "MAX_RECOVERY_ATTEMPTS_EXCEEDED" in finished.error.message

        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_FAILED and stored.error.reason == "DURABLE_RECOVERY_EXHAUSTED"
        # What its clients saw, then the error step: nothing lost, nothing made up.
        assert [s.SerializeToString(deterministic=True) for s in stored.execution_steps[: len(seen)]] == [
            s.SerializeToString(deterministic=True) for s in seen
        ]
        assert stored.execution_steps[-1].WhichOneof("payload") == "error"
        assert len(stored.execution_steps) == len(seen) + 1
        # The workflow is not run again: the sleep call in flight at the kill was the last tool call.
        assert [c["tool"] for c in cluster.calls()] == ["echo", "sleep"]

        def workflow_status() -> str:
            with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
                cursor = conn.execute("SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (run_id,))
                row = cursor.fetchone()
                return str(row[0]) if row is not None else ""

        # Handled (after its end was written): not looked at again.
        await wait_for(lambda: workflow_status() == "CANCELLED", timeout_s=15)
