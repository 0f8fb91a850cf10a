from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import grpc

from agentrun_core.domain import RunStatus
from agentrun_core.proto_convert import run_from_pb
from execution_service.publish.outbox import Outbox
from execution_service.publish.publisher import OutboxPublisher
from execution_service.publish.records import decode_request, encode_run
from execution_service.publish.recovery import INTERRUPTED_MESSAGE, checkpoint, recover_interrupted
from tests.execution_service.publish.conftest import FAST_BACKOFF, T0, make_run
from tests.execution_service.publish.fake_runs_server import FakeRunsServer


async def test_interrupted_runs_are_published_at_start_up(
    outbox_path: Path, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    # Before the "crash": two runs start, one gets checkpoints, one finishes; the process dies (no stop, no close
    # of the journal entries).
    first_outbox = await Outbox.open(outbox_path)
    first = OutboxPublisher(first_outbox, channel, backoff=FAST_BACKOFF)
    await first.record(make_run("alive", RunStatus.RUNNING))
    await first.record(make_run("done", RunStatus.RUNNING))
    assert await first.checkpoint(make_run("alive", RunStatus.RUNNING, steps=3))
    await first.record(make_run("done", RunStatus.COMPLETED, steps=1))
    await first_outbox.close()

    # Start-up: recover, then publish.
    outbox = await Outbox.open(outbox_path)
    now = T0 + timedelta(minutes=2)
    assert await recover_interrupted(outbox, now) == ["alive"]
    assert await outbox.live_runs() == []
    assert await recover_interrupted(outbox, now) == []  # idempotent
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF)
    publisher.start()
    try:
        assert await publisher.flush(timeout_s=5)
    finally:
        await publisher.stop(drain_timeout_s=1)
        await outbox.close()

    stored = server.servicer.stored
    run = run_from_pb(stored["alive"])
    assert run.status is RunStatus.INTERRUPTED
    assert run.end_time == now
    assert run.duration == timedelta(minutes=2)
    assert run.error is not None and run.error.reason == "INTERRUPTED" and run.error.message == INTERRUPTED_MESSAGE
    assert len(run.execution_steps) == 3  # the steps of the last checkpoint survive
    assert run_from_pb(stored["done"]).status is RunStatus.COMPLETED
    assert server.servicer.statuses("alive") == ["RUN_STATUS_INTERRUPTED"]


async def test_checkpoint_never_resurrects_a_finished_run(outbox: Outbox) -> None:
    await outbox.put("r1", encode_run(make_run("r1")), terminal=False, mark_live=True)
    await outbox.put("r1", encode_run(make_run("r1", RunStatus.COMPLETED)), terminal=True)
    assert not await checkpoint(outbox, make_run("r1", RunStatus.RUNNING, steps=2))
    assert not await checkpoint(outbox, make_run("never-started", RunStatus.RUNNING))
    assert await recover_interrupted(outbox) == []
    item = await outbox.get("r1")
    assert item is not None and run_from_pb(decode_request(item.payload).run).status is RunStatus.COMPLETED


async def test_recovery_never_overwrites_a_pending_terminal_record(outbox: Outbox) -> None:
    # A stale journal entry next to a real terminal record (e.g. written by mark_live after the terminal put).
    await outbox.put("r1", encode_run(make_run("r1", RunStatus.COMPLETED)), terminal=True)
    await outbox.mark_live("r1", encode_run(make_run("r1")))
    assert await recover_interrupted(outbox) == []
    assert await outbox.live_runs() == []
    item = await outbox.get("r1")
    assert item is not None and run_from_pb(decode_request(item.payload).run).status is RunStatus.COMPLETED


async def test_unreadable_snapshot_is_kept_and_others_recovered(outbox: Outbox) -> None:
    await outbox.mark_live("broken", b"\xff\xff not a protobuf")
    await outbox.mark_live("ok", encode_run(dataclasses.replace(make_run("ok"), task="t")))
    assert await recover_interrupted(outbox) == ["ok"]
    assert [run_id for run_id, _ in await outbox.live_runs()] == ["broken"]
