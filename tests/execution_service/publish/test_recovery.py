from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import grpc

from agentrun_core.domain import (
    ErrorReason,
    ExecutionStep,
    ModelCall,
    RunError,
    RunStatus,
    StepPayload,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallStatus,
)
from agentrun_core.proto_convert import run_from_pb
from execution_service.model.pricing import price_run
from execution_service.publish.outbox import Outbox
from execution_service.publish.publisher import OutboxPublisher
from execution_service.publish.records import decode_request, encode_run
from execution_service.publish.recovery import IN_FLIGHT_RESULT, INTERRUPTED_MESSAGE, recover_interrupted
from execution_service.publish.step_journal import StepJournal, journal_directory
from tests.execution_service.publish.conftest import FAST_BACKOFF, T0, make_run
from tests.execution_service.publish.fake_runs_server import FakeRunsServer

USAGE = TokenUsage(input_tokens=1200, output_tokens=80, total_tokens=1300, thinking_tokens=20)


def _steps(run_id: str) -> list[ExecutionStep]:
    """A model call that asked for two tools, one finished, one still in flight at the crash."""
    payloads: list[StepPayload] = [
        ModelCall(model="gemini-2.5-flash", usage=USAGE, function_call_count=2, context_window_used=0.125),
        ToolCallStarted(call_id="c1", tool_name="echo", server="test", arguments_json='{"text":"x"}'),
        ToolCallStarted(call_id="c2", tool_name="sleep", server="test", arguments_json='{"seconds":60}'),
        ToolCallFinished(call_id="c1", tool_name="echo", result_text="x", duration=timedelta(milliseconds=3)),
    ]
    return [
        ExecutionStep(run_id=run_id, sequence=i, time=T0 + timedelta(seconds=i), payload=p)
        for i, p in enumerate(payloads, start=1)
    ]


async def test_interrupted_runs_are_published_at_start_up_with_every_journaled_step(
    outbox_path: Path, server: FakeRunsServer, channel: grpc.aio.Channel
) -> None:
    # Before the "crash": two runs start and journal their steps, one finishes; the process dies (no stop, no close).
    first_outbox = await Outbox.open(outbox_path)
    first = OutboxPublisher(first_outbox, channel, backoff=FAST_BACKOFF)
    await first.record(make_run("alive", RunStatus.RUNNING))
    await first.record(make_run("done", RunStatus.RUNNING))
    for step in _steps("alive"):
        first.journal_step(step)
    first.journal_step(ExecutionStep("done", 1, T0, ModelCall(model="gemini-2.5-flash")))
    await first.record(make_run("done", RunStatus.COMPLETED, steps=1))
    await first_outbox.close()
    journal = StepJournal(journal_directory(outbox_path))
    assert not journal.path("done").exists()  # the terminal record holds its steps: the file went with it

    # Start-up: recover, then publish.
    outbox = await Outbox.open(outbox_path)
    assert await recover_interrupted(outbox, journal) == ["alive"]
    assert await outbox.live_runs() == []
    assert not journal.path("alive").exists()
    assert await recover_interrupted(outbox, journal) == []  # idempotent
    publisher = OutboxPublisher(outbox, channel, backoff=FAST_BACKOFF, journal=journal)
    publisher.start()
    try:
        assert await publisher.flush(timeout_s=5)
    finally:
        await publisher.stop(drain_timeout_s=1)
        await outbox.close()

    stored = server.servicer.stored
    run = run_from_pb(stored["alive"])
    assert run.status is RunStatus.INTERRUPTED
    # It ends when its last journaled step happened (T0 + 4 s), not when it was recovered (now, much later).
    assert (run.end_time, run.duration) == (T0 + timedelta(seconds=4), timedelta(seconds=4))
    assert run.error == RunError(ErrorReason.INTERRUPTED.value, INTERRUPTED_MESSAGE)
    # Every journaled step, then the error step.
    assert [s.payload for s in run.execution_steps[:-1]] == [s.payload for s in _steps("alive")]
    assert run.execution_steps[-1].payload == run.error and run.execution_steps[-1].sequence == 5
    assert run.execution_steps[-1].time == run.end_time
    # The totals a finished run has, from the steps.
    assert run.token_usage == USAGE and run.steps_taken == 1
    assert run.cost is not None and run.cost == price_run("gemini-2.5-flash", USAGE)
    assert run.tools_used == ("echo", "sleep")
    assert [(c.id, c.status, c.result) for c in run.tool_calls] == [
        ("c1", ToolCallStatus.SUCCEEDED, "x"),
        ("c2", ToolCallStatus.CANCELLED, IN_FLIGHT_RESULT),
    ]
    assert run.max_context_window_used == 0.125
    assert run_from_pb(stored["done"]).status is RunStatus.COMPLETED
    assert server.servicer.statuses("alive") == ["RUN_STATUS_INTERRUPTED"]


async def test_a_torn_last_frame_keeps_the_steps_before_it(outbox: Outbox, tmp_path: Path) -> None:
    journal = StepJournal(tmp_path / "journal")
    await outbox.put("r1", encode_run(make_run("r1")), terminal=False, mark_live=True)
    for step in _steps("r1")[:2]:
        journal.append(step)
    with journal.path("r1").open("ab") as f:
        f.write(b"\x40\x00\x00\x00\x01\x02")  # a frame the crash cut short
    assert await recover_interrupted(outbox, journal) == ["r1"]
    item = await outbox.get("r1")
    assert item is not None
    run = run_from_pb(decode_request(item.payload).run)
    assert [type(s.payload).__name__ for s in run.execution_steps] == ["ModelCall", "ToolCallStarted", "RunError"]


async def test_a_run_without_journaled_steps_keeps_those_of_its_record(outbox: Outbox, tmp_path: Path) -> None:
    # An outbox written before the live-steps journal existed: the RUNNING snapshot carried the steps.
    await outbox.put("r1", encode_run(make_run("r1", steps=2)), terminal=False, mark_live=True)
    assert await recover_interrupted(outbox, StepJournal(tmp_path / "journal")) == ["r1"]
    item = await outbox.get("r1")
    assert item is not None
    run = run_from_pb(decode_request(item.payload).run)
    assert len(run.execution_steps) == 3 and run.steps_taken == 2


async def test_recovery_never_overwrites_a_pending_terminal_record(outbox: Outbox, tmp_path: Path) -> None:
    # A stale journal entry next to a real terminal record (e.g. written by mark_live after the terminal put).
    journal = StepJournal(tmp_path / "journal")
    await outbox.put("r1", encode_run(make_run("r1", RunStatus.COMPLETED)), terminal=True)
    await outbox.mark_live("r1", encode_run(make_run("r1")))
    journal.append(_steps("r1")[0])
    journal.append(ExecutionStep("gone", 1, T0, ModelCall(model="m")))  # a run that ended before its file went
    assert await recover_interrupted(outbox, journal) == []
    assert await outbox.live_runs() == []
    item = await outbox.get("r1")
    assert item is not None and run_from_pb(decode_request(item.payload).run).status is RunStatus.COMPLETED
    assert list(journal.directory.iterdir()) == []


async def test_unreadable_snapshot_is_kept_and_others_recovered(outbox: Outbox, tmp_path: Path) -> None:
    journal = StepJournal(tmp_path / "journal")
    await outbox.mark_live("broken", b"\xff\xff not a protobuf")
    await outbox.mark_live("ok", encode_run(dataclasses.replace(make_run("ok"), task="t")))
    journal.append(ExecutionStep("broken", 1, T0, ModelCall(model="m")))
    assert await recover_interrupted(outbox, journal) == ["ok"]
    assert [run_id for run_id, _ in await outbox.live_runs()] == ["broken"]
    assert journal.read("broken") != []  # kept with its snapshot, for inspection
