"""Durable mode's retention (execution_service.durable.retention), one replica in this process: a finished run's
journal and DBOS workflow leave the execution database once AGENTRUN_EXECUTION_RETENTION has passed since it ended,
while RunsService keeps its record; a run still running, and one that ended within the retention, stay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from dbos import DBOS

from agentrun_core.settings import SettingsError
from execution_service.config import ExecutionSettings
from execution_service.durable.retention import ExecutionRetention
from execution_service.durable.runtime import libpq_url
from execution_service.schedules.durable import TICK_WORKFLOW, schedule_tick
from tests.execution_service.e2e.test_admission_queue import AGENTS, occupy_the_slot, rest_of
from tests.support.model_gate import Gate
from tests.support.stack import Stack, running_stack

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]


def durable(database_url: str, **settings: Any) -> dict[str, Any]:
    return {"execution_database_url": database_url, "replica_id": "retention-replica", **settings}


async def journal_rows(database_url: str, run_id: str) -> int:
    """The run's journal entries and checkpoints."""
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as conn:
        cursor = await conn.execute(
            "SELECT (SELECT count(*) FROM agentrun.journal_entries WHERE run_id = %(id)s) "
            "+ (SELECT count(*) FROM agentrun.journal_checkpoints WHERE run_id = %(id)s)",
            {"id": run_id},
        )
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def always(run_id: str) -> bool:
    return True


async def never(run_id: str) -> bool:
    return False


def retention_of(url: str, recorded: Callable[[str], Awaitable[bool]] = always) -> ExecutionRetention:
    return ExecutionRetention(url, timedelta(hours=1), recorded=recorded, journal_less=[TICK_WORKFLOW])


async def workflow_ended(run_id: str) -> None:
    for _ in range(100):
        status = await DBOS.get_workflow_status_async(run_id)
        if status is not None and status.status == "SUCCESS":
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the workflow of run {run_id} did not end within 10 s")


async def finished_run(stack: Stack, task: str = "go") -> str:
    events = [
        e async for e in stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task=task))
    ]
    assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
    run_id = events[0].run_started.run_id
    await workflow_ended(run_id)
    return run_id


async def test_a_finished_run_leaves_the_execution_database_after_the_retention_and_stays_in_runs_service(
    tmp_path: Path, database_url: str
) -> None:
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, **durable(database_url, execution_retention=None)) as stack:
        stack.gemini.set_responder(gate.respond)
        done = await finished_run(stack)
        running_stream, running = await occupy_the_slot(stack)  # its model call waits for the gate
        assert await journal_rows(database_url, done) > 0 and await journal_rows(database_url, running) > 0

        # Within the retention: nothing goes.
        url = libpq_url(database_url)
        assert await retention_of(url).purge() == 0
        assert await journal_rows(database_url, done) > 0

        # Past it: the finished run goes, journal and workflow; the running one stays whatever its age.
        later = datetime.now(UTC) + timedelta(hours=2)
        assert await retention_of(url).purge(now=later) == 1
        assert await journal_rows(database_url, done) == 0
        assert await DBOS.get_workflow_status_async(done) is None
        assert await journal_rows(database_url, running) > 0

        # RunsService keeps the run's record, steps and all.
        stored = (await stack.runs_stub().GetRun(rs.GetRunRequest(run_id=done, view=rs.RUN_VIEW_FULL))).run
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED and len(stored.execution_steps) > 0

        gate.open()
        rest = await asyncio.wait_for(rest_of(running_stream), 30)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        await workflow_ended(running)  # the stream's end comes just before the workflow's
        assert await retention_of(url).purge(now=later) == 1
        assert await journal_rows(database_url, running) == 0


async def test_the_id_of_a_purged_run_is_not_used_again_and_it_cannot_be_cancelled(
    tmp_path: Path, database_url: str
) -> None:
    """An ExecuteAgent retried with the run id of a run whose workflow the retention deleted (reaching a replica that
    does not hold it in memory) must not execute it a second time: RunsService still has the run."""
    async with running_stack(tmp_path, AGENTS, **durable(database_url, execution_retention=None)) as stack:
        stack.gemini.set_responder(Gate().respond)
        done = await finished_run(stack)
        later = datetime.now(UTC) + timedelta(hours=2)
        assert await retention_of(libpq_url(database_url)).purge(now=later)
    async with running_stack(tmp_path, AGENTS, **durable(database_url, execution_retention=None)) as restarted:
        again = ex.ExecuteAgentRequest(agent_name="worker", task="go", run_id=done)
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            _ = [e async for e in restarted.execution_stub().ExecuteAgent(again)]
        assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert restarted.gemini.requests == []
        with pytest.raises(grpc.aio.AioRpcError) as cancelled:
            await restarted.execution_stub().CancelRun(ex.CancelRunRequest(run_id=done))
        assert cancelled.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already finished" in (cancelled.value.details() or "")


async def test_a_cancelled_workflow_goes_only_once_runs_service_holds_its_run(
    tmp_path: Path, database_url: str
) -> None:
    """Anyone may cancel a workflow (DBOS's admin API, Conductor) before its run was recorded: such a run's journal
    stays until RunsService confirms it holds the run."""
    gate = Gate()
    async with running_stack(tmp_path, AGENTS, **durable(database_url, execution_retention=None)) as stack:
        stack.gemini.set_responder(gate.respond)
        stream, cancelled = await occupy_the_slot(stack)
        await DBOS.cancel_workflow_async(cancelled)
        status = await DBOS.get_workflow_status_async(cancelled)
        assert status is not None and status.status == "CANCELLED"
        url = libpq_url(database_url)
        later = datetime.now(UTC) + timedelta(hours=2)
        assert await retention_of(url, recorded=never).purge(now=later) == 0
        assert await journal_rows(database_url, cancelled) > 0
        assert await retention_of(url, recorded=always).purge(now=later) == 1
        assert await journal_rows(database_url, cancelled) == 0
        gate.open()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await asyncio.wait_for(rest_of(stream), 30)


async def test_a_scheduler_tick_workflow_goes_too(tmp_path: Path, database_url: str) -> None:
    """One workflow per tick of a durable schedule: they would pile up for ever (a tick is claimed in RunsService
    before its run starts, so a late tick started again could not run twice)."""
    async with running_stack(tmp_path, AGENTS, **durable(database_url, execution_retention=None)):
        tick = await DBOS.start_workflow_async(schedule_tick, datetime.now(UTC), "nobody/no-schedule")
        await asyncio.wait_for(tick.get_result(), 30)  # a schedule no agent declares: the tick ends at once
        url = libpq_url(database_url)
        assert await retention_of(url).purge() == 0
        assert await DBOS.get_workflow_status_async(tick.workflow_id) is not None  # within the retention: kept
        await retention_of(url).purge(now=datetime.now(UTC) + timedelta(hours=2))
        assert await DBOS.get_workflow_status_async(tick.workflow_id) is None


async def test_each_replica_purges_on_its_own_every_interval(tmp_path: Path, database_url: str) -> None:
    settings = durable(database_url, execution_retention=timedelta(seconds=3), execution_retention_interval_s=0.2)
    async with running_stack(tmp_path, AGENTS, **settings) as stack:
        stack.gemini.set_responder(Gate().respond)
        done = await finished_run(stack)
        assert await journal_rows(database_url, done) > 0
        for _ in range(150):
            if await journal_rows(database_url, done) == 0 and await DBOS.get_workflow_status_async(done) is None:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the finished run was not purged within 15 s")
        stored = (await stack.runs_stub().GetRun(rs.GetRunRequest(run_id=done))).run
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED


def test_the_retention_setting() -> None:
    assert ExecutionSettings.from_env({}).execution_retention == timedelta(days=7)
    assert ExecutionSettings.from_env({"AGENTRUN_EXECUTION_RETENTION": "36h"}).execution_retention == timedelta(
        hours=36
    )
    assert ExecutionSettings.from_env({"AGENTRUN_EXECUTION_RETENTION": " Forever "}).execution_retention is None
    with pytest.raises(SettingsError, match=r"AGENTRUN_EXECUTION_RETENTION must be forever or a period: it must be a "):
        ExecutionSettings.from_env({"AGENTRUN_EXECUTION_RETENTION": "soon"})
    with pytest.raises(SettingsError, match=r"AGENTRUN_EXECUTION_RETENTION must be longer than 0s"):
        ExecutionSettings.from_env({"AGENTRUN_EXECUTION_RETENTION": "0s"})
