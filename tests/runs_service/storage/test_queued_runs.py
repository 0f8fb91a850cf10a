"""QUEUED runs in RunsService (issue 10 §5): stored with their wait, replaced by their RUNNING and terminal records
(never the other way round), filterable, not finished for stats, never deleted."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from agentrun_core.domain import Run, RunStatus
from runs_service.queries import DeleteRunsQuery, GroupBy, ListRunsQuery, RecordOutcome, Scope, StatsQuery
from runs_service.storage.repository import RunRepository
from tests.support.run_factory import make_run

EVERYONE = Scope.everything()


def queued(run: Run) -> Run:
    """`run` as ExecutionService records it while it waits: no steps, no end, the enqueue time as start_time."""
    return dataclasses.replace(
        run.basic(),
        status=RunStatus.QUEUED,
        error=None,
        final_response="",
        end_time=None,
        duration=None,
        steps_taken=0,
        tools_used=(),
        token_usage=dataclasses.replace(run.token_usage, input_tokens=0, output_tokens=0, total_tokens=0),
        cost=None,
        queue_duration=None,
        max_context_window_used=0.0,
    )


async def test_queued_then_running_then_terminal_and_never_back(repo: RunRepository) -> None:
    done = make_run(status=RunStatus.COMPLETED, model_calls=2, tool_calls=1)
    waiting = queued(done)
    assert (await repo.record_run(waiting)).outcome is RecordOutcome.CREATED
    stored = await repo.get_run(done.id, full=False, scope=EVERYONE)
    assert stored is not None and stored.status is RunStatus.QUEUED and stored.queue_duration is None

    waited = timedelta(seconds=2.5)
    running = make_run(run_id=done.id, status=RunStatus.RUNNING, start_time=done.start_time + waited)
    running = dataclasses.replace(running, queue_duration=waited)
    assert (await repo.record_run(running)).outcome is RecordOutcome.UPDATED
    # A late QUEUED record never takes a started run back to the queue.
    late = await repo.record_run(waiting)
    assert (late.outcome, late.stored_status) == (RecordOutcome.IGNORED, RunStatus.RUNNING)

    final = dataclasses.replace(done, start_time=running.start_time, queue_duration=waited)
    final = dataclasses.replace(final, end_time=final.start_time + timedelta(seconds=3), duration=timedelta(seconds=3))
    assert (await repo.record_run(final)).outcome is RecordOutcome.UPDATED
    stored = await repo.get_run(done.id, full=True, scope=EVERYONE)
    assert stored is not None and stored.status is RunStatus.COMPLETED
    assert stored.queue_duration == waited and stored.start_time == running.start_time
    assert (await repo.record_run(waiting)).outcome is RecordOutcome.IGNORED


async def test_queued_runs_are_filterable_not_finished_and_never_deleted(repo: RunRepository) -> None:
    completed = make_run(agent="a", status=RunStatus.COMPLETED)
    waiting = queued(make_run(agent="a", status=RunStatus.COMPLETED, start_time=completed.start_time))
    for run in (completed, waiting):
        await repo.record_run(run)

    page = await repo.list_runs(ListRunsQuery(filter="status = RUN_STATUS_QUEUED"), EVERYONE)
    assert [r.id for r in page.runs] == [waiting.id]
    page = await repo.list_runs(ListRunsQuery(filter="status != QUEUED"), EVERYONE)
    assert [r.id for r in page.runs] == [completed.id]

    start = completed.start_time - timedelta(hours=1)
    rows = await repo.run_stats(StatsQuery(start, start + timedelta(hours=2), GroupBy.AGENT), EVERYONE)
    assert (rows[0].run_count, rows[0].completed_count, rows[0].success_rate) == (2, 1, 1.0)

    deleted = await repo.delete_runs(DeleteRunsQuery(match_all=True), EVERYONE)
    assert deleted.run_count == 1
    assert await repo.get_run(waiting.id, full=False, scope=EVERYONE) is not None
