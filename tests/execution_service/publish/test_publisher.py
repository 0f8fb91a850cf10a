from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import run_pb2

from agentrun_core.backoff import Backoff
from agentrun_core.domain import RunStatus
from execution_service.publish.base import RunSink
from execution_service.publish.outbox import Outbox
from execution_service.publish.publisher import OutboxPublisher
from execution_service.publish.records import encode_run
from tests.execution_service.publish.conftest import FAST_BACKOFF, PublisherFactory, make_run
from tests.execution_service.publish.fake_runs_server import FakeRunsServer


async def test_records_made_while_runs_service_is_down_are_delivered_once(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory
) -> None:
    await server.stop()
    publisher = await make_publisher(outbox)
    ids = [f"run-{i:02d}" for i in range(20)]
    for run_id in ids:
        await publisher.record(make_run(run_id, RunStatus.RUNNING))
    for run_id in ids[:15]:
        await publisher.record(make_run(run_id, RunStatus.COMPLETED, steps=2))
    await asyncio.sleep(0.5)  # the sender meets UNAVAILABLE and backs off
    assert server.servicer.accepted == []
    assert publisher.counters.retried > 0
    assert (await outbox.counts()).pending == 20

    await server.start()
    assert await publisher.flush(timeout_s=10)

    accepted = server.servicer.accepted
    assert sorted(r.id for r in accepted) == ids  # exactly one delivery per run: its latest state
    for run_id in ids[:15]:
        assert server.servicer.statuses(run_id) == ["RUN_STATUS_COMPLETED"]
    for run_id in ids[15:]:
        assert server.servicer.statuses(run_id) == ["RUN_STATUS_RUNNING"]
    counts = await outbox.counts()
    assert (counts.pending, counts.parked, counts.live) == (0, 0, 5)  # 5 runs are still executing
    stats = await publisher.stats()
    assert (stats.sent, stats.pending, stats.parked) == (20, 0, 0)


async def test_undelivered_records_survive_a_publisher_restart(
    outbox_path: Path, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    await server.stop()
    first_outbox = await Outbox.open(outbox_path)
    first = OutboxPublisher(first_outbox, channel, backoff=FAST_BACKOFF)  # never started: nothing is sent
    for i in range(5):
        await first.record(make_run(f"run-{i}", RunStatus.COMPLETED))
    await first.stop()
    await first_outbox.close()

    await server.start()
    second_outbox = await Outbox.open(outbox_path)
    second = OutboxPublisher(second_outbox, channel, backoff=FAST_BACKOFF)
    second.start()
    try:
        assert await second.flush(timeout_s=10)
    finally:
        await second.stop(drain_timeout_s=1)
        await second_outbox.close()
    assert sorted(r.id for r in server.servicer.accepted) == [f"run-{i}" for i in range(5)]


async def test_stop_keeps_what_it_could_not_send(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    await server.stop()
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF)
    publisher.start()
    await publisher.record(make_run("r1", RunStatus.COMPLETED))
    started = time.monotonic()
    await publisher.stop(drain_timeout_s=0.5)
    assert time.monotonic() - started < 2
    item = await outbox.get("r1")
    assert item is not None and item.attempts >= 1 and "UNAVAILABLE" in (item.last_error or "")


async def test_stop_drains_due_records(outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel) -> None:
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF)
    for i in range(10):
        await publisher.record(make_run(f"r{i}", RunStatus.COMPLETED))
    publisher.start()
    await publisher.stop(drain_timeout_s=5)
    assert len(server.servicer.accepted) == 10
    assert (await outbox.counts()).pending == 0


async def test_running_then_terminal_arrive_in_order(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory
) -> None:
    publisher = await make_publisher(outbox)
    await publisher.record(make_run("seq", RunStatus.RUNNING))
    assert await publisher.flush(timeout_s=5)
    await publisher.record(make_run("seq", RunStatus.COMPLETED, steps=3))
    assert await publisher.flush(timeout_s=5)
    assert server.servicer.statuses("seq") == ["RUN_STATUS_RUNNING", "RUN_STATUS_COMPLETED"]


async def test_terminal_put_while_running_is_in_flight_is_sent_after_it(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory
) -> None:
    server.servicer.delay_s["slow"] = 0.4
    server.servicer.delay_once.add("slow")
    publisher = await make_publisher(outbox)
    await publisher.record(make_run("slow", RunStatus.RUNNING))
    await asyncio.sleep(0.1)  # RUNNING is now in flight
    await publisher.record(make_run("slow", RunStatus.FAILED, steps=1))
    assert await publisher.flush(timeout_s=5)
    assert server.servicer.statuses("slow") == ["RUN_STATUS_RUNNING", "RUN_STATUS_FAILED"]
    assert server.servicer.max_concurrent_per_run == 1
    assert server.servicer.stored["slow"].status == run_pb2.RUN_STATUS_FAILED


async def test_invalid_argument_parks_the_record_and_others_still_flow(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.servicer.reject["bad"] = grpc.StatusCode.INVALID_ARGUMENT
    publisher = await make_publisher(outbox)
    await publisher.record(make_run("bad", RunStatus.COMPLETED))
    for i in range(5):
        await publisher.record(make_run(f"good-{i}", RunStatus.COMPLETED))
    assert await publisher.flush(timeout_s=5)  # parked records do not count as pending
    assert sorted(r.id for r in server.servicer.accepted) == [f"good-{i}" for i in range(5)]
    [parked] = await outbox.parked()
    assert parked.run_id == "bad" and (parked.last_error or "").startswith("INVALID_ARGUMENT")
    assert publisher.counters.parked == 1
    attempts = server.servicer.attempts
    await asyncio.sleep(0.5)
    assert server.servicer.attempts == attempts  # not retried
    assert any(r.levelname == "ERROR" and "parked" in r.getMessage() for r in caplog.records)


async def test_unavailable_is_retried_with_backoff(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory
) -> None:
    server.servicer.unavailable_next = 3
    publisher = await make_publisher(outbox, max_in_flight=1)
    await publisher.record(make_run("r1", RunStatus.COMPLETED))
    assert await publisher.flush(timeout_s=5)
    assert server.servicer.statuses("r1") == ["RUN_STATUS_COMPLETED"]
    assert publisher.counters.retried == 3 and publisher.counters.sent == 1


async def test_deadline_exceeded_is_retried(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory
) -> None:
    server.servicer.delay_s["slow"] = 1.0
    server.servicer.delay_once.add("slow")
    publisher = await make_publisher(outbox, call_timeout_s=0.2)
    await publisher.record(make_run("slow", RunStatus.COMPLETED))
    assert await publisher.flush(timeout_s=5)
    assert publisher.counters.retried >= 1
    item_statuses = server.servicer.statuses("slow")
    assert item_statuses[-1] == "RUN_STATUS_COMPLETED"


async def test_unauthenticated_keeps_retrying_until_the_token_is_fixed(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.servicer.required_token = "good"
    token = ["expired"]
    publisher = await make_publisher(outbox, call_metadata=lambda: [("authorization", f"Bearer {token[0]}")])
    await publisher.record(make_run("r1", RunStatus.COMPLETED))
    assert not await publisher.flush(timeout_s=0.5)
    assert publisher.counters.config_errors >= 1 and publisher.counters.parked == 0
    assert any(r.levelname == "ERROR" and "refuses our calls" in r.getMessage() for r in caplog.records)
    token[0] = "good"
    assert await publisher.flush(timeout_s=5)
    assert server.servicer.statuses("r1") == ["RUN_STATUS_COMPLETED"]
    assert server.servicer.metadata[-1]["authorization"] == "Bearer good"


async def test_concurrent_calls_and_batch_sizes_are_bounded(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    for i in range(12):
        server.servicer.delay_s[f"r{i}"] = 0.3
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF, max_in_flight=4, batch_max_records=2)
    for i in range(12):
        await publisher.record(make_run(f"r{i}", RunStatus.COMPLETED))
    publisher.start()
    try:
        await asyncio.sleep(0.15)
        stats = await publisher.stats()
        assert (stats.calls_in_flight, stats.in_flight) == (4, 8)
        assert await publisher.flush(timeout_s=5)
    finally:
        await publisher.stop(drain_timeout_s=0)
    assert len(server.servicer.accepted) == 12
    assert server.servicer.batch_sizes == [2] * 6 and server.servicer.single_calls == 0


async def test_records_go_in_batches_bounded_by_count_and_bytes(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    runs = [make_run(f"r{i:02d}", RunStatus.COMPLETED, steps=3) for i in range(30)]
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF, batch_max_records=10)
    for run in runs:
        await publisher.record(run)
    publisher.start()
    try:
        assert await publisher.flush(timeout_s=5)
        assert server.servicer.batch_sizes == [10, 10, 10]
        assert publisher.counters.sent == 30
    finally:
        await publisher.stop(drain_timeout_s=0)
    assert sorted(server.servicer.stored) == [run.id for run in runs]


async def test_batches_stay_under_the_byte_cap(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    runs = [make_run(f"r{i}", RunStatus.COMPLETED, steps=3) for i in range(6)]
    size = len(encode_run(runs[0]))
    assert all(len(encode_run(run)) == size for run in runs)
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF, batch_max_bytes=int(size * 2.5))
    for run in runs:
        await publisher.record(run)
    publisher.start()
    try:
        assert await publisher.flush(timeout_s=5)
    finally:
        await publisher.stop(drain_timeout_s=0)
    assert server.servicer.batch_sizes == [2, 2, 2]


async def test_an_older_runs_service_gets_one_record_per_record_run_until_it_has_record_runs(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server.servicer.batch_rpc = False
    publisher = await make_publisher(outbox, batch_reprobe_s=0.5)
    for i in range(5):
        await publisher.record(make_run(f"old-{i}", RunStatus.COMPLETED))
    assert await publisher.flush(timeout_s=5)
    assert sorted(server.servicer.stored) == [f"old-{i}" for i in range(5)]
    assert server.servicer.single_calls == 5 and server.servicer.batch_sizes == []
    assert publisher.counters.retried == 0 and publisher.counters.parked == 0
    assert sum("has no RecordRuns" in r.getMessage() for r in caplog.records) == 1

    server.servicer.batch_rpc = True  # RunsService upgraded: batches again after the probe interval
    await asyncio.sleep(0.6)
    for i in range(3):
        await publisher.record(make_run(f"new-{i}", RunStatus.COMPLETED))
    assert await publisher.flush(timeout_s=5)
    assert sum(server.servicer.batch_sizes) == 3 and server.servicer.single_calls == 5


async def test_a_batch_refused_as_a_whole_is_sent_record_by_record(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    server.servicer.batch_error = grpc.StatusCode.RESOURCE_EXHAUSTED  # e.g. over the server's message size cap
    server.servicer.reject["bad"] = grpc.StatusCode.INVALID_ARGUMENT
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF)
    for run_id in ("a", "bad", "b"):
        await publisher.record(make_run(run_id, RunStatus.COMPLETED))
    publisher.start()
    try:
        assert await publisher.flush(timeout_s=5)
    finally:
        await publisher.stop(drain_timeout_s=0)
    assert server.servicer.batch_sizes == [3] and server.servicer.single_calls == 3
    assert sorted(server.servicer.stored) == ["a", "b"]
    [parked] = await outbox.parked()
    assert parked.run_id == "bad" and (parked.last_error or "").startswith("INVALID_ARGUMENT")


async def test_a_transient_batch_failure_retries_every_record_of_it(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    server.servicer.unavailable_next = 2
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF)
    for i in range(4):
        await publisher.record(make_run(f"r{i}", RunStatus.COMPLETED))
    publisher.start()
    try:
        assert await publisher.flush(timeout_s=5)
    finally:
        await publisher.stop(drain_timeout_s=0)
    # Each record backs off on its own schedule after a failure, so the retries may go in smaller batches.
    sizes = server.servicer.batch_sizes
    assert sizes[0] == 4 and sum(sizes[2:]) == 4
    assert sorted(r.id for r in server.servicer.accepted) == ["r0", "r1", "r2", "r3"]  # once each
    assert publisher.counters.retried == 4 + sizes[1] and publisher.counters.sent == 4


async def test_a_failing_metadata_hook_is_retried_not_lost(
    outbox: Outbox, server: FakeRunsServer, make_publisher: PublisherFactory, caplog: pytest.LogCaptureFixture
) -> None:
    calls = [0]

    def flaky_metadata() -> list[tuple[str, str]]:
        calls[0] += 1
        if calls[0] <= 2:
            raise RuntimeError("token source not ready")
        return [("authorization", "Bearer t")]

    publisher = await make_publisher(outbox, call_metadata=flaky_metadata)
    await publisher.record(make_run("r1", RunStatus.COMPLETED))
    assert await publisher.flush(timeout_s=5)
    assert server.servicer.statuses("r1") == ["RUN_STATUS_COMPLETED"]
    assert publisher.counters.retried == 2
    assert "token source not ready" in caplog.text


async def test_publisher_is_a_run_sink(outbox: Outbox, channel: grpc.aio.Channel) -> None:
    sink: RunSink = OutboxPublisher(outbox, channel)  # checked by mypy
    await sink.record(make_run("r1"))
    assert (await outbox.counts()).live == 1


async def test_a_backlog_left_by_an_outage_drains_in_full_batches_when_runs_service_returns(
    outbox: Outbox, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    """During an outage every record backs off on its own jittered schedule; once RunsService answers again, the
    backlog goes out in batches of up to batch_max_records, not one record per call as each schedule comes due."""
    await server.stop()
    backoff = Backoff(initial_s=0.2, multiplier=2.0, max_s=3.0, jitter=0.5)  # the shape of DELIVERY_BACKOFF
    publisher = OutboxPublisher(outbox, channel, backoff=backoff, call_timeout_s=2.0, batch_max_records=100)
    ids = [f"run-{i:03d}" for i in range(200)]
    for run_id in ids:
        await publisher.record(make_run(run_id, RunStatus.COMPLETED, steps=1))
    publisher.start()
    try:
        deadline = time.monotonic() + 20
        while not all(item is not None and item.attempts >= 2 for item in [await outbox.get(run_id) for run_id in ids]):
            assert time.monotonic() < deadline, "the records did not all fail twice during the outage"
            await asyncio.sleep(0.2)
        await server.start()
        assert await publisher.flush(timeout_s=30)
    finally:
        await publisher.stop(drain_timeout_s=0)
    assert sorted(server.servicer.stored) == ids
    assert server.servicer.single_calls == 0
    assert sum(server.servicer.batch_sizes) == 200
    assert len(server.servicer.batch_sizes) <= 5, server.servicer.batch_sizes


def test_the_batch_cap_is_at_most_what_record_runs_accepts(outbox: Outbox) -> None:
    channel = grpc.aio.insecure_channel("127.0.0.1:1")
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="batch_max_records must be from 1 to 1000"):
            OutboxPublisher(outbox, channel, batch_max_records=bad)
    OutboxPublisher(outbox, channel, batch_max_records=1000)
