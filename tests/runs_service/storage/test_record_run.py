from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from agentrun_core.domain import Cost, RunStatus
from runs_service.queries import RecordOutcome, Scope
from runs_service.storage.repository import RunRepository
from tests.runs_service.storage.helpers import distinct_steps, row_counts
from tests.support.run_factory import make_run

EVERYONE = Scope.everything()


async def test_round_trip_basic_and_full(repo: RunRepository) -> None:
    run = make_run()
    assert len(run.execution_steps) == 40 and len(run.tool_calls) == 15

    result = await repo.record_run(run)
    assert (result.outcome, result.stored_status) == (RecordOutcome.CREATED, RunStatus.COMPLETED)

    full = await repo.get_run(run.id, full=True, scope=EVERYONE)
    assert full == run
    assert [s.sequence for s in full.execution_steps] == list(range(1, 41))
    assert all(s.time.tzinfo is not None and s.time.utcoffset() == timedelta(0) for s in full.execution_steps)
    basic = await repo.get_run(run.id, full=False, scope=EVERYONE)
    assert basic == run.basic()
    assert await repo.get_run("01900000-0000-7000-8000-000000000000", full=True, scope=EVERYONE) is None


async def test_round_trip_of_edge_values(repo: RunRepository) -> None:
    paris = timezone(timedelta(hours=2))
    base = make_run(status=RunStatus.FAILED)
    run = dataclasses.replace(
        base,
        start_time=base.start_time.astimezone(paris),  # stored and returned as the same instant in UTC
        labels={},
        variables={"quote": 'he said "hi" \u00e9\u2603'},
        cost=Cost(Decimal("1234567890.0123456789"), "EUR", "table-9"),
        tools_used=(),
        execution_steps=tuple(dataclasses.replace(s, run_id="") for s in base.execution_steps),  # filled in
    )
    await repo.record_run(run)
    got = await repo.get_run(run.id, full=True, scope=EVERYONE)
    assert got is not None
    assert got.start_time == run.start_time and got.start_time.tzinfo == UTC
    assert got.error == base.error and got.labels == {} and got.variables == run.variables
    assert got.cost is not None and (got.cost.currency_code, got.cost.price_table_version) == ("EUR", "table-9")
    if repo.engine.dialect.name == "postgresql":
        assert got.cost.amount == Decimal("1234567890.0123456789")
    else:  # SQLite keeps NUMERIC as a double: 15 significant digits
        assert abs(got.cost.amount - Decimal("1234567890.0123456789")) < Decimal("0.00001")
    assert got.execution_steps == base.execution_steps  # run_id filled in with the run's id


async def test_no_cost_and_running_run_round_trip(repo: RunRepository) -> None:
    run = dataclasses.replace(make_run(status=RunStatus.RUNNING), cost=None)
    await repo.record_run(run)
    got = await repo.get_run(run.id, full=True, scope=EVERYONE)
    assert got == run and got.end_time is None and got.duration is None and got.cost is None


async def test_same_record_twice_is_unchanged(repo: RunRepository) -> None:
    run = make_run()
    await repo.record_run(run)
    again = await repo.record_run(run)
    assert (again.outcome, again.stored_status) == (RecordOutcome.UNCHANGED, RunStatus.COMPLETED)
    assert await row_counts(repo, run.id) == (1, 40, 15)


async def test_running_then_terminal_is_updated(repo: RunRepository) -> None:
    run_id = make_run().id
    running = make_run(run_id=run_id, status=RunStatus.RUNNING, model_calls=3, tool_calls=2)
    assert (await repo.record_run(running)).outcome is RecordOutcome.CREATED
    assert await row_counts(repo, run_id) == (1, 7, 2)

    more = make_run(run_id=run_id, status=RunStatus.RUNNING, model_calls=5, tool_calls=6)
    assert (await repo.record_run(more)).outcome is RecordOutcome.UPDATED

    done = make_run(run_id=run_id)
    result = await repo.record_run(done)
    assert (result.outcome, result.stored_status) == (RecordOutcome.UPDATED, RunStatus.COMPLETED)
    assert await row_counts(repo, run_id) == (1, 40, 15)
    assert await repo.get_run(run_id, full=True, scope=EVERYONE) == done


async def test_stale_running_snapshot_is_ignored(repo: RunRepository) -> None:
    run_id = make_run().id
    await repo.record_run(make_run(run_id=run_id, status=RunStatus.RUNNING, model_calls=5, tool_calls=6))
    stale = make_run(run_id=run_id, status=RunStatus.RUNNING, model_calls=2, tool_calls=1)
    result = await repo.record_run(stale)
    assert (result.outcome, result.stored_status) == (RecordOutcome.IGNORED, RunStatus.RUNNING)
    assert await row_counts(repo, run_id) == (1, 17, 6)


async def test_terminal_run_is_never_overwritten(repo: RunRepository) -> None:
    done = make_run()
    await repo.record_run(done)

    late_running = make_run(run_id=done.id, status=RunStatus.RUNNING)
    result = await repo.record_run(late_running)
    assert (result.outcome, result.stored_status) == (RecordOutcome.IGNORED, RunStatus.COMPLETED)

    other_terminal = make_run(run_id=done.id, status=RunStatus.FAILED)
    result = await repo.record_run(other_terminal)
    assert (result.outcome, result.stored_status) == (RecordOutcome.IGNORED, RunStatus.COMPLETED)

    assert await repo.get_run(done.id, full=True, scope=EVERYONE) == done


async def test_fifty_concurrent_identical_records(repo: RunRepository) -> None:
    run = make_run()
    results = await asyncio.gather(*(repo.record_run(run) for _ in range(50)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(RecordOutcome.CREATED) == 1
    assert outcomes.count(RecordOutcome.UNCHANGED) == 49
    assert await row_counts(repo, run.id) == (1, 40, 15)
    assert await distinct_steps(repo, run.id) == 40


async def test_concurrent_running_and_terminal_records_end_terminal(repo: RunRepository) -> None:
    run_id = make_run().id
    start = datetime(2026, 3, 1, tzinfo=UTC)
    snapshots = [
        make_run(run_id=run_id, status=RunStatus.RUNNING, model_calls=n, tool_calls=n - 1, start_time=start)
        for n in range(2, 9)
    ]
    final = make_run(run_id=run_id, start_time=start)
    await asyncio.gather(*(repo.record_run(r) for r in [*snapshots, final, *snapshots]))
    stored = await repo.get_run(run_id, full=True, scope=EVERYONE)
    assert stored == final
    assert await row_counts(repo, run_id) == (1, 40, 15)


async def test_concurrent_running_and_terminal_records_of_a_new_run_never_deadlock(repo: RunRepository) -> None:
    """Before: on PostgreSQL some of these failed with StorageUnavailable "deadlock detected" (RecordRun answered
    UNAVAILABLE): the create-first pipeline inserted its steps under a run another writer was rewriting."""
    for trial in range(12):
        final = make_run(model_calls=3, tool_calls=2, seed=trial)
        running = dataclasses.replace(
            final,
            status=RunStatus.RUNNING,
            end_time=None,
            duration=None,
            final_response="",
            error=None,
            execution_steps=(),
            tool_calls=(),
        )
        results = await asyncio.gather(*(repo.record_run(final if i % 2 else running) for i in range(16)))
        assert sum(r.outcome is RecordOutcome.CREATED for r in results) == 1
        assert await repo.get_run(final.id, full=True, scope=EVERYONE) == final


async def test_re_sending_a_stored_run_logs_no_warning(repo: RunRepository, caplog: pytest.LogCaptureFixture) -> None:
    """Before: every re-send on PostgreSQL logged psycopg's WARNING "error ignored terminating <psycopg.AsyncPipeline
    [INERROR]>: pipeline aborted" (at-least-once delivery makes re-sends routine)."""
    run = make_run()
    assert (await repo.record_run(run)).outcome is RecordOutcome.CREATED
    with caplog.at_level(logging.INFO):
        assert (await repo.record_run(run)).outcome is RecordOutcome.UNCHANGED
        later = dataclasses.replace(run, final_response="a different terminal record")
        assert (await repo.record_run(later)).outcome is RecordOutcome.IGNORED
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert await row_counts(repo, run.id) == (1, 40, 15)
