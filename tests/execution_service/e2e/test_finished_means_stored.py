"""RunFinished comes after RunsService stored the run, so a client can read it back at once (and is told otherwise)."""

from __future__ import annotations

import time
from pathlib import Path

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.support.stack import agent_source, running_stack


async def test_the_run_is_stored_when_its_stream_ends(tmp_path: Path) -> None:
    agents = {"echoer": agent_source(model="test", tools=["test/echo"])}
    async with running_stack(tmp_path, agents) as stack:
        runs = stack.runs_stub()
        for attempt in range(5):
            events = await stack.execute(agent_name="echoer", task=f"echo {attempt}")
            finished = events[-1].run_finished
            assert finished.status == run_pb2.RUN_STATUS_COMPLETED and finished.recorded
            # No flush, no polling: read straight away, as a client would.
            stored = (await runs.GetRun(rs.GetRunRequest(run_id=finished.run_id, view=rs.RUN_VIEW_FULL))).run
            assert stored.status == run_pb2.RUN_STATUS_COMPLETED
            assert [s.sequence for s in stored.execution_steps] == [e.step.sequence for e in events[1:-1]]


async def test_with_runs_service_down_the_stream_ends_at_once_and_says_the_run_is_not_stored_yet(
    tmp_path: Path,
) -> None:
    agents = {"echoer": agent_source(model="test", tools=["test/echo"])}
    async with running_stack(tmp_path, agents, with_runs_service=False) as stack:
        await stack.execute(agent_name="echoer", task="first")  # the outbox learns RunsService is unreachable
        started = time.monotonic()
        events = await stack.execute(agent_name="echoer", task="second")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED and not finished.recorded
        assert time.monotonic() - started < 1.5  # not held up by the 2 s wait for an acknowledgement
        assert stack.execution.publisher is not None
        assert (await stack.execution.publisher.stats()).pending >= 1
