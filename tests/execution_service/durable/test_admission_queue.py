"""Admission by queue in durable mode, one replica (in this process; the shared queue over two replica processes is
tests/execution_service/e2e/test_admission_over_replicas.py): a run over AGENTRUN_MAX_CONCURRENT_RUNS waits QUEUED in
the shared DBOS queue (streamed, stored, watchable) and starts when a slot frees, its start time that of leaving the
queue; a full queue is RESOURCE_EXHAUSTED; the queue timeout ends a waiting run promptly, while the slot is still
held; CancelRun and a disconnected client end a queued run without a model call; the run timeout counts from the start
of execution."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.execution_service.e2e.test_admission_queue import AGENTS, event_kind, next_event, occupy_the_slot, rest_of
from tests.support.model_gate import Gate
from tests.support.stack import Stack, running_stack, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

QUEUE = "agentrun_runs"


def durable(database_url: str, **settings: Any) -> dict[str, Any]:
    return {"execution_database_url": database_url, "replica_id": "queue-replica", **settings}


async def stored(stack: Stack, run_id: str, status: int, timeout_s: float = 15.0) -> run_pb2.Run:
    """The run once RunsService stores it with `status` (QUEUED and RUNNING records are published best effort)."""
    stub = stack.runs_stub()
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            run = (await stub.GetRun(rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL))).run
            if run.status == status:
                return run
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        assert time.monotonic() < deadline, f"run {run_id} was not stored with status {status}"
        await asyncio.sleep(0.1)


async def test_a_run_over_the_limit_waits_queued_then_starts_when_a_slot_frees(
    tmp_path: Path, database_url: str
) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, **durable(database_url, max_concurrent_runs=1)) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, first_id = await occupy_the_slot(stack)

        queued_stream = aiter(
            stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="then me"))
        )
        head = await next_event(queued_stream)
        assert event_kind(head) == "run_queued"
        queued = head.run_queued
        assert (queued.position, queued.queue_name, queued.agent_name) == (0, QUEUE, "worker")
        assert queued.queue_timeout.ToTimedelta().total_seconds() == 600
        run_id = queued.run_id

        # While it waits: RunsService stores it QUEUED, the QUEUED filter finds it, WatchRun sends run_queued.
        await stored(stack, run_id, run_pb2.RUN_STATUS_QUEUED)
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(filter="status = RUN_STATUS_QUEUED"))
        assert [r.id for r in listed.runs] == [run_id]
        watch = aiter(stack.execution_stub().WatchRun(ex.WatchRunRequest(run_id=run_id)))
        assert event_kind(await next_event(watch)) == "run_queued"
        await asyncio.sleep(0.5)  # several polls of the queue: the run stays queued while the slot is held
        assert len(stack.gemini.requests) == 1

        gate.open()
        first_events = await rest_of(first_stream)
        assert first_events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        events = [head, *await rest_of(queued_stream)]
        assert [event_kind(e) for e in events] == ["run_queued", "run_started", "step", "step", "run_finished"]
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        watched = [await next_event(watch) for _ in range(len(events) - 1)]
        assert [e.SerializeToString() for e in watched] == [e.SerializeToString() for e in events[1:]]
        # WatchRun of the started run from its first step on: run_queued, RunStarted, then the steps, as in embedded.
        again = [e async for e in stack.execution_stub().WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=2))]
        assert [event_kind(e) for e in again] == ["run_queued", "run_started", "step", "run_finished"]

        run = await stored(stack, run_id, run_pb2.RUN_STATUS_COMPLETED)
        first = await stored(stack, first_id, run_pb2.RUN_STATUS_COMPLETED)
        waited = run.queue_duration.ToTimedelta()
        assert waited.total_seconds() > 0.5
        # It started when it left the queue: after the first run's model call ended; the wait was up to then.
        assert run.start_time.ToDatetime() >= first.execution_steps[0].time.ToDatetime()
        assert run.start_time.ToDatetime() - waited == queued.enqueue_time.ToDatetime()
        assert events[1].run_started.start_time == run.start_time
        assert events[1].run_started.replica == "queue-replica"
        assert stack.gemini.max_in_flight == 1


async def test_a_full_queue_is_resource_exhausted_with_what_to_do(tmp_path: Path, database_url: str) -> None:
    gate = Gate()
    async with running_stack(
        tmp_path, AGENTS, **durable(database_url, max_concurrent_runs=1, max_queued_runs=1)
    ) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        waiting = aiter(stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="2nd")))
        assert event_kind(await next_event(waiting)) == "run_queued"

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.execute(agent_name="worker", task="3rd")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        message = refused.value.details() or ""
        assert "AGENTRUN_MAX_QUEUED_RUNS=1" in message and "AGENTRUN_MAX_CONCURRENT_RUNS=1" in message
        assert "retry later, add replicas, or raise AGENTRUN_MAX_QUEUED_RUNS" in message

        gate.open()
        assert (await rest_of(first_stream))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert (await rest_of(waiting))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        # Places were given back: a run is taken again (it may wait a poll for the slot the last run's workflow
        # holds until it returned).
        events = await stack.execute(agent_name="worker", task="4th")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED


async def test_the_queue_timeout_ends_a_waiting_run_promptly(tmp_path: Path, database_url: str) -> None:
    gate = Gate()
    async with running_stack(
        tmp_path, AGENTS, **durable(database_url, max_concurrent_runs=1, queue_timeout_s=3.0)
    ) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)  # (it too must leave the queue within 3 s)
        began = time.monotonic()
        events = await stack.execute(agent_name="worker", task="too late")
        assert time.monotonic() - began < 8  # while the slot is still held: not when it frees
        assert [event_kind(e) for e in events] == ["run_queued", "step", "run_finished"]
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_TIMED_OUT and finished.error.reason == "QUEUE_TIMEOUT"
        assert "AGENTRUN_QUEUE_TIMEOUT_S" in finished.error.message
        assert finished.duration.ToTimedelta().total_seconds() == 0  # it never ran (as in the embedded mode)

        run = await stored(stack, finished.run_id, run_pb2.RUN_STATUS_TIMED_OUT)
        assert run.error.reason == "QUEUE_TIMEOUT"
        assert run.duration.ToTimedelta().total_seconds() == 0 and run.start_time == run.end_time
        assert 2.9 < run.queue_duration.ToTimedelta().total_seconds() < 8
        assert run.steps_taken == 0 and len(stack.gemini.requests) == 1  # it never called the model
        # Its watchers get the same end, from the stream.
        watched = [e async for e in stack.execution_stub().WatchRun(ex.WatchRunRequest(run_id=finished.run_id))]
        assert [event_kind(e) for e in watched] == ["run_queued", "step", "run_finished"]

        gate.open()
        assert (await rest_of(first_stream))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED


async def test_the_run_timeout_counts_from_the_start_of_execution(tmp_path: Path, database_url: str) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, **durable(database_url, max_concurrent_runs=1)) as stack:
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
        finished = (await rest_of(queued_stream))[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        run = await stored(stack, finished.run_id, run_pb2.RUN_STATUS_COMPLETED)
        assert run.queue_duration.ToTimedelta().total_seconds() >= 3.9


async def test_cancelling_a_queued_run_ends_it_at_once_without_a_model_call(tmp_path: Path, database_url: str) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, **durable(database_url, max_concurrent_runs=1)) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        stub = stack.execution_stub()
        queued_stream = aiter(stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="never mind")))
        run_id = (await next_event(queued_stream)).run_queued.run_id
        watch = aiter(stub.WatchRun(ex.WatchRunRequest(run_id=run_id)))
        assert event_kind(await next_event(watch)) == "run_queued"

        began = time.monotonic()
        await stub.CancelRun(ex.CancelRunRequest(run_id=run_id, mode=ex.CANCEL_MODE_AFTER_TURN))
        events = await rest_of(queued_stream)
        assert time.monotonic() - began < 5  # while the slot is still held
        assert [event_kind(e) for e in events] == ["step", "run_finished"]
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED
        assert [event_kind(e) for e in await rest_of(watch)] == ["step", "run_finished"]
        run = await stored(stack, run_id, run_pb2.RUN_STATUS_CANCELLED)
        assert run.steps_taken == 0 and run.HasField("queue_duration")
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await stub.CancelRun(ex.CancelRunRequest(run_id=run_id))
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        gate.open()
        await rest_of(first_stream)
        assert len(stack.gemini.requests) == 1


async def test_a_client_that_disconnects_from_its_queued_run_cancels_it(tmp_path: Path, database_url: str) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, **durable(database_url, max_concurrent_runs=1)) as stack:
        stack.gemini.set_responder(gate.respond)
        first_stream, _ = await occupy_the_slot(stack)
        call = stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="bye"))
        queued_stream: AsyncIterator[ex.ExecuteAgentResponse] = aiter(call)
        run_id = (await next_event(queued_stream)).run_queued.run_id
        call.cancel()

        run = await stored(stack, run_id, run_pb2.RUN_STATUS_CANCELLED)
        assert run.steps_taken == 0
        gate.open()
        await rest_of(first_stream)
        await wait_for(lambda: len(stack.gemini.requests) >= 1, timeout_s=5)
        assert len(stack.gemini.requests) == 1
