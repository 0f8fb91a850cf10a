"""Durable mode, one replica (in this process): AGENTRUN_MAX_CONCURRENT_RUNS bounds the runs a replica executes. Until
the shared DBOS queue is wired (docs/deployment.md, "Admission and queues"), a run over the bound is refused with
RESOURCE_EXHAUSTED and an actionable message, never started unbounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.support.model_gate import Gate
from tests.support.replicas import execution_database
from tests.support.stack import agent_source, running_stack

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


@pytest.fixture
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


async def test_a_run_over_the_replicas_bound_is_refused_with_what_to_do(tmp_path: Path, database_url: str) -> None:
    gate = Gate()
    agents = {"worker": agent_source(model="gemini-2.5-flash")}
    async with running_stack(
        tmp_path, agents, execution_database_url=database_url, replica_id="bounded", max_concurrent_runs=1
    ) as stack:
        stack.gemini.set_responder(gate.respond)
        holder: AsyncIterator[ex.ExecuteAgentResponse] = aiter(
            stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="wait"))
        )
        assert (await anext(holder)).WhichOneof("event") == "run_started"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.execute(agent_name="worker", task="one too many")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "AGENTRUN_MAX_CONCURRENT_RUNS=1" in (refused.value.details() or "")
        gate.open()
        events = [event async for event in holder]
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert len(stack.gemini.requests) == 1
