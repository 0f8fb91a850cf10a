"""Admission (issue 10 §5, embedded mode): a run over the concurrency limit waits QUEUED (streamed, stored,
filterable) and starts when a slot frees; a full queue is RESOURCE_EXHAUSTED; the queue timeout ends a run that waited
too long; the run timeout counts from the start of execution."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.support.model_gate import Gate
from tests.support.stack import Stack, agent_source, running_stack

AGENTS = {
    "worker": agent_source(model="gemini-2.5-flash"),
    "quick": agent_source(model="gemini-2.5-flash", limits={"run_timeout": "3s"}),
}


def event_kind(event: ex.ExecuteAgentResponse | ex.WatchRunResponse) -> str:
    return event.WhichOneof("event") or ""


async def next_event(stream: AsyncIterator[Any], timeout_s: float = 30.0) -> Any:
    return await asyncio.wait_for(anext(stream), timeout_s)


async def occupy_the_slot(stack: Stack) -> tuple[AsyncIterator[ex.ExecuteAgentResponse], str]:
    """Starts a run that holds the only slot until the gate opens; returns its stream (at run_started) and id."""
    stream = aiter(stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="wait")))
    first = await next_event(stream)
    assert event_kind(first) == "run_started"
    return stream, first.run_started.run_id


async def rest_of(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def stored_status(stack: Stack, run_id: str) -> run_pb2.Run:
    """The run as RunsService has it now (QUEUED and RUNNING records included)."""
    assert await stack.execution.flush_outbox(15.0), "the outbox did not drain"
    reply = await stack.runs_stub().GetRun(rs.GetRunRequest(run_id=run_id))
    return reply.run


async def test_a_run_over_the_limit_waits_queued_then_starts_when_a_slot_frees(tmp_path: Path) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, max_concurrent_runs=1, max_queued_runs=5) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, first_id = await occupy_the_slot(stack)

        queued_stream = aiter(
            stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="then me"))
        )
        head = await next_event(queued_stream)
        assert event_kind(head) == "run_queued"
        queued = head.run_queued
        assert (queued.position, queued.queue_name, queued.agent_name) == (1, "embedded", "worker")
        assert queued.queue_timeout.ToTimedelta().total_seconds() == 600
        run_id = queued.run_id

        # While it waits: RunsService stores it QUEUED, the QUEUED filter finds it, WatchRun replays run_queued.
        stored = await stored_status(stack, run_id)
        assert stored.status == run_pb2.RUN_STATUS_QUEUED and not stored.HasField("end_time")
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(filter="status = RUN_STATUS_QUEUED"))
        assert [r.id for r in listed.runs] == [run_id]
        watch = aiter(stack.execution_stub().WatchRun(ex.WatchRunRequest(run_id=run_id)))
        assert event_kind(await next_event(watch)) == "run_queued"
        assert len(stack.gemini.requests) == 1  # only the first run called the model

        gate.open()
        first_events = await rest_of(first_stream)
        assert first_events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        events = [head, *await rest_of(queued_stream)]
        assert [event_kind(e) for e in events] == ["run_queued", "run_started", "step", "step", "run_finished"]
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        watched = [head, *await rest_of(watch)]
        assert [event_kind(e) for e in watched] == [event_kind(e) for e in events]

        run = await stack.stored_run(run_id)
        first = await stack.stored_run(first_id)
        assert run.status == run_pb2.RUN_STATUS_COMPLETED
        waited = run.queue_duration.ToTimedelta()
        assert waited.total_seconds() > 0
        # It started when it left the queue: after the first run's model call ended, and the wait was up to then.
        assert run.start_time.ToDatetime() >= first.execution_steps[0].time.ToDatetime()
        assert run.start_time.ToDatetime() - waited == queued.enqueue_time.ToDatetime()
        assert events[1].run_started.start_time == run.start_time
        assert not first.HasField("queue_duration")
        assert stack.gemini.max_in_flight == 1


async def test_a_full_queue_is_resource_exhausted_with_what_to_do(tmp_path: Path) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, max_concurrent_runs=1, max_queued_runs=1) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        waiting = aiter(stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="2nd")))
        assert event_kind(await next_event(waiting)) == "run_queued"

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.execute(agent_name="worker", task="3rd")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        message = refused.value.details() or ""
        assert "AGENTRUN_MAX_QUEUED_RUNS=1" in message and "AGENTRUN_MAX_CONCURRENT_RUNS=1" in message
        assert "retry later" in message

        gate.open()
        assert (await rest_of(first_stream))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert (await rest_of(waiting))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        # Slots and places were given back: a run now starts at once.
        events = await stack.execute(agent_name="worker", task="4th")
        assert event_kind(events[0]) == "run_started"


async def test_the_queue_timeout_ends_a_run_that_never_started(tmp_path: Path) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, max_concurrent_runs=1, queue_timeout_s=1.0) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        events = await stack.execute(agent_name="worker", task="too late")
        assert [event_kind(e) for e in events] == ["run_queued", "step", "run_finished"]
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_TIMED_OUT and finished.error.reason == "QUEUE_TIMEOUT"
        assert "AGENTRUN_QUEUE_TIMEOUT_S" in finished.error.message
        assert finished.duration.ToTimedelta().total_seconds() == 0

        run = await stack.stored_run(finished.run_id)
        assert run.status == run_pb2.RUN_STATUS_TIMED_OUT and run.error.reason == "QUEUE_TIMEOUT"
        assert 0.9 < run.queue_duration.ToTimedelta().total_seconds() < 10
        assert run.steps_taken == 0 and len(stack.gemini.requests) == 1  # it never called the model

        gate.open()
        assert (await rest_of(first_stream))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED


async def test_the_run_timeout_counts_from_the_start_of_execution(tmp_path: Path) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, max_concurrent_runs=1) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        # "quick" has a 3 s run timeout and waits 4 s in the queue: counted from the enqueue, it would time out.
        queued_stream = aiter(
            stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="quick", task="answer"))
        )
        assert event_kind(await next_event(queued_stream)) == "run_queued"
        await asyncio.sleep(4.0)
        gate.open()
        await rest_of(first_stream)
        events = await rest_of(queued_stream)
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        run = await stack.stored_run(finished.run_id)
        assert run.queue_duration.ToTimedelta().total_seconds() >= 3.9


async def test_cancelling_a_queued_run_ends_it_without_running_it(tmp_path: Path) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, max_concurrent_runs=1) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        stub = stack.execution_stub()
        queued_stream = aiter(stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="never mind")))
        run_id = (await next_event(queued_stream)).run_queued.run_id
        await stub.CancelRun(ex.CancelRunRequest(run_id=run_id, mode=ex.CANCEL_MODE_AFTER_TURN))
        events = await rest_of(queued_stream)
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED
        run = await stack.stored_run(run_id)
        assert run.status == run_pb2.RUN_STATUS_CANCELLED and run.steps_taken == 0
        gate.open()
        await rest_of(first_stream)
        assert len(stack.gemini.requests) == 1


async def test_a_shutdown_ends_queued_runs_at_once_and_lets_running_ones_finish(tmp_path: Path) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, max_concurrent_runs=1) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, first_id = await occupy_the_slot(stack)
        queued_stream = aiter(
            stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="queued at stop"))
        )
        run_id = (await next_event(queued_stream)).run_queued.run_id

        stopping = asyncio.create_task(stack.execution.stop(30.0))
        events = await rest_of(queued_stream)  # ends before the running run, without ever starting
        assert [event_kind(e) for e in events] == ["step", "run_finished"]
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_INTERRUPTED and "start it again" in finished.error.message
        assert not stopping.done()  # the running run still has its grace period
        gate.open()
        assert (await rest_of(first_stream))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        await asyncio.wait_for(stopping, 60)

        runs = stack.runs_stub()
        stored = (await runs.GetRun(rs.GetRunRequest(run_id=run_id))).run
        assert stored.status == run_pb2.RUN_STATUS_INTERRUPTED and stored.steps_taken == 0
        assert (await runs.GetRun(rs.GetRunRequest(run_id=first_id))).run.status == run_pb2.RUN_STATUS_COMPLETED
        assert len(stack.gemini.requests) == 1
