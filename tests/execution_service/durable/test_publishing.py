"""Durable mode, one replica (in this process): RunsService down loses nothing. The run ends, its RunFinished says it
is not stored yet, and its workflow keeps publishing it with the shared backoff until RunsService is back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.support.stack import agent_source, running_stack, steps_of

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


async def test_a_run_ended_while_runs_service_is_down_is_stored_once_it_is_back(
    tmp_path: Path, database_url: str
) -> None:
    agents = {"plain": agent_source(tools=["test/echo"])}
    async with running_stack(
        tmp_path, agents, with_runs_service=False, execution_database_url=database_url, replica_id="publisher"
    ) as stack:
        events = await stack.execute(agent_name="plain", task="while RunsService is down")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED and not finished.recorded
        run_id = events[0].run_started.run_id
        await stack.start_runs()
        stub = stack.runs_stub()
        deadline = time.monotonic() + 60
        while True:
            try:
                stored = (await stub.GetRun(rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL))).run
                if stored.status == run_pb2.RUN_STATUS_COMPLETED:
                    break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND
            assert time.monotonic() < deadline, "the run was not published after RunsService came back"
            await asyncio.sleep(0.2)
        assert list(stored.execution_steps) == steps_of(events)
        assert stored.final_response == finished.final_response
