"""Durable mode's RunPublisher against a fake RunsService (a real gRPC server on port 0): records published at the
same time share RecordRuns calls, and each keeps its own fate (stored, refused for good, retried); an older
RunsService without RecordRuns gets one RecordRun per record."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from agentrun.runs.v1 import runs_service_pb2

from agentrun_core.domain import RunStatus
from execution_service.durable.publishing import RunPublisher
from tests.execution_service.publish.conftest import FAST_BACKOFF, make_run
from tests.execution_service.publish.fake_runs_server import FAST_RECONNECT_OPTIONS, FakeRunsServer, FakeRunsServicer


@pytest.fixture
async def server() -> AsyncIterator[FakeRunsServer]:
    async with FakeRunsServer() as srv:
        yield srv


@pytest.fixture
async def publisher(server: FakeRunsServer) -> AsyncIterator[RunPublisher]:
    async with grpc.aio.insecure_channel(server.target, options=FAST_RECONNECT_OPTIONS) as channel:
        yield RunPublisher(channel, lambda: (), backoff=FAST_BACKOFF, call_timeout_s=2.0, batch_max_records=20)


async def test_runs_ending_at_once_are_stored_in_a_few_record_runs_calls(
    server: FakeRunsServer, publisher: RunPublisher
) -> None:
    runs = [make_run(f"run-{i}", RunStatus.COMPLETED, steps=2) for i in range(100)]
    delivered = await asyncio.gather(*(publisher.deliver(run) for run in runs))
    fake = server.servicer
    assert all(delivered)
    assert sorted(fake.stored) == sorted(run.id for run in runs)
    assert all(fake.stored[run.id].status == 2 for run in runs)  # RUN_STATUS_COMPLETED
    assert fake.single_calls == 0
    assert sum(fake.batch_sizes) == 100 and max(fake.batch_sizes) <= 20
    assert len(fake.batch_sizes) <= 8, fake.batch_sizes  # 100 records, 20 per call, two calls in flight


async def test_a_refused_record_fails_alone_and_the_others_of_its_batch_are_stored(
    server: FakeRunsServer, publisher: RunPublisher
) -> None:
    server.servicer.reject["run-bad"] = grpc.StatusCode.INVALID_ARGUMENT
    ids = ["run-a", "run-bad", "run-b", "run-c"]
    delivered = await asyncio.gather(*(publisher.deliver(make_run(i, RunStatus.COMPLETED)) for i in ids))
    assert delivered == [True, False, True, True]
    assert sorted(server.servicer.stored) == ["run-a", "run-b", "run-c"]
    assert server.servicer.batch_sizes and server.servicer.single_calls == 0  # refused within a batch


async def test_records_wait_through_an_outage_and_are_stored_once_runs_service_answers(
    server: FakeRunsServer, publisher: RunPublisher
) -> None:
    server.servicer.unavailable_next = 3
    runs = [make_run(f"run-{i}", RunStatus.FAILED) for i in range(10)]
    assert all(await asyncio.gather(*(publisher.deliver(run) for run in runs)))
    assert sorted(server.servicer.stored) == sorted(run.id for run in runs)


async def test_an_older_runs_service_gets_one_record_run_per_record() -> None:
    async with (
        FakeRunsServer(FakeRunsServicer(batch_rpc=False)) as old,
        grpc.aio.insecure_channel(old.target, options=FAST_RECONNECT_OPTIONS) as channel,
    ):
        publisher = RunPublisher(channel, lambda: (), backoff=FAST_BACKOFF, call_timeout_s=2.0)
        runs = [make_run(f"run-{i}", RunStatus.COMPLETED) for i in range(6)]
        assert all(await asyncio.gather(*(publisher.deliver(run) for run in runs)))
        assert sorted(old.servicer.stored) == sorted(run.id for run in runs)
        single_before = old.servicer.single_calls
        assert await publisher.deliver(make_run("run-later", RunStatus.COMPLETED))
        assert old.servicer.single_calls == single_before + 1  # no RecordRuns probe before REPROBE_S


async def test_give_up_after_returns_false_while_runs_service_is_down(
    server: FakeRunsServer, publisher: RunPublisher
) -> None:
    server.servicer.unavailable_next = 1000
    assert not await publisher.deliver(make_run("run-late", RunStatus.COMPLETED), give_up_after_s=0.5)
    assert "run-late" not in server.servicer.stored


class _GatedStub:
    """RecordRuns answers only when the test opens its gate (RecordRun at once)."""

    def __init__(self) -> None:
        self.gates: list[asyncio.Event] = []

    async def RecordRuns(self, request: Any, **call: Any) -> Any:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        created = runs_service_pb2.RECORD_OUTCOME_CREATED
        return runs_service_pb2.RecordRunsResponse(
            results=[runs_service_pb2.RecordRunResult(outcome=created) for _ in request.requests]
        )

    async def RecordRun(self, request: Any, **call: Any) -> Any:
        return runs_service_pb2.RecordRunResponse()


async def _occupy_both_senders(publisher: RunPublisher, stub: _GatedStub) -> list[asyncio.Task[bool]]:
    """Four deliveries: the first sender takes two in one RecordRuns, the second the other two; both then wait."""
    runs = [make_run(f"run-{i}", RunStatus.COMPLETED) for i in range(4)]
    first = [asyncio.create_task(publisher.deliver(run)) for run in runs[:2]]
    for _ in range(3):
        await asyncio.sleep(0)
    more = [asyncio.create_task(publisher.deliver(run)) for run in runs[2:]]
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(stub.gates) == 2  # both senders wait on RecordRuns
    return [*first, *more]


async def test_a_record_published_as_both_senders_finish_is_still_sent() -> None:
    """Both senders end in the same turn of the loop; a record that comes right then must start a sender (it used to
    wait for one that never came: a done task leaves the senders' set one step later)."""
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        publisher = RunPublisher(channel, lambda: (), backoff=FAST_BACKOFF)
        stub = _GatedStub()
        publisher._stub = stub  # type: ignore[assignment]  # a stub whose answers the test releases
        held = await _occupy_both_senders(publisher, stub)
        release = asyncio.Event()

        async def late() -> bool:
            await release.wait()
            return await publisher.deliver(make_run("run-late", RunStatus.COMPLETED))

        last = asyncio.create_task(late())
        await asyncio.sleep(0)
        for gate in stub.gates:
            gate.set()
        release.set()
        assert await asyncio.wait_for(asyncio.gather(*held, last), 5) == [True] * 5
        await publisher.close()


async def test_a_bounded_delivery_gives_up_in_time_behind_slow_batches() -> None:
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        publisher = RunPublisher(channel, lambda: (), backoff=FAST_BACKOFF)
        stub = _GatedStub()
        publisher._stub = stub  # type: ignore[assignment]
        held = await _occupy_both_senders(publisher, stub)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert not await publisher.deliver(make_run("run-bounded", RunStatus.COMPLETED), give_up_after_s=0.3)
        assert loop.time() - started < 1.0
        for gate in stub.gates:
            gate.set()
        assert await asyncio.wait_for(asyncio.gather(*held), 5) == [True] * 4
        await publisher.close()
