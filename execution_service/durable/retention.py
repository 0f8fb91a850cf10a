"""Finished durable runs leave the execution database after `AGENTRUN_EXECUTION_RETENTION` (7 days by default).

While a durable run runs, its journal (stream and checkpointed call results) and its DBOS workflow (status, input,
output) are what let any replica serve it and resume it. Once it has finished they serve only WatchRun of a finished run
(a client reconnecting after the end) and DBOS's view of it: RunsService holds the run's record, with its own retention
(a run's workflow ends after the step that published the record). Left alone, they would grow for ever (every step's
protobuf, every model answer and tool result, again), so every replica looks every
`AGENTRUN_EXECUTION_RETENTION_INTERVAL_S` (durable.periodic) for run workflows that ended (SUCCESS; or CANCELLED, as a
run DBOS gave up on ends once its record is published, when RunsService confirms it holds the run: anyone may cancel a
workflow) before now minus the retention, and deletes, `BATCH` runs at a time: their journal entries and checkpoints,
their cancel requests (one transaction), then their workflows through DBOS's `delete_workflows`. A replica that dies
between the two leaves workflows that the next pass deletes (deleting journal rows again is a no-op). One replica purges
at a time (an advisory lock held for the pass): the others skip it.

The durable scheduler's tick workflows (one per tick, no journal) that succeeded go the same way: a tick is claimed in
RunsService before its run starts, so even a late tick started again could not run twice.

Workflows that ended in ERROR are kept (their failure path itself failed, so their record may not have reached
RunsService: look at them first). After the purge, WatchRun of such a run is NOT_FOUND, as in embedded mode once the run
is over; GetRun on RunsService has it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from dbos import DBOS

from execution_service.durable.workflow import WORKFLOW_NAME
from execution_service.errors import ExecutionError

log = logging.getLogger(__name__)

# Runs deleted per transaction; a full batch is followed by the next at once.
BATCH = 500
SUCCESS = "SUCCESS"
CANCELLED = "CANCELLED"
_LOCK = "SELECT pg_try_advisory_lock(hashtext('agentrun.execution_retention'))"
_DELETES = (
    "DELETE FROM agentrun.journal_entries WHERE run_id = ANY(%(ids)s)",
    "DELETE FROM agentrun.journal_checkpoints WHERE run_id = ANY(%(ids)s)",
    "DELETE FROM agentrun.cancel_requests WHERE run_id = ANY(%(ids)s)",
)


async def _ended(status: str, cutoff: datetime, name: str = WORKFLOW_NAME) -> list[str]:
    """Up to BATCH workflows named `name` (default: runs) that ended with `status` before `cutoff`."""
    statuses = await DBOS.list_workflows_async(
        status=status,
        name=name,
        completed_before=cutoff.isoformat(),
        limit=BATCH,
        load_input=False,
        load_output=False,
    )
    return [found.workflow_id for found in statuses]


class ExecutionRetention:
    def __init__(
        self,
        url: str,
        retention: timedelta,
        *,
        recorded: Callable[[str], Awaitable[bool]],
        journal_less: Sequence[str] = (),
    ) -> None:
        """`url`: the execution database, as psycopg.connect takes it; `recorded`: whether RunsService holds the
        run's terminal record (asked for CANCELLED workflows only); `journal_less`: the names of our other workflows,
        which keep no journal (the durable scheduler's ticks: one workflow per tick), deleted when they succeeded."""
        self._url = url
        self.retention = retention
        self._recorded = recorded
        self._journal_less = list(journal_less)

    async def purge(self, now: datetime | None = None) -> int:
        """Deletes the runs that finished before `now` minus the retention, and the other workflows named
        `journal_less` that succeeded before then; how many runs. 0 when another replica is purging."""
        cutoff = (now or datetime.now(UTC)) - self.retention
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            locked = await (await conn.execute(_LOCK)).fetchone()  # held until this connection closes
            if not locked or not locked[0]:
                log.info("another replica is purging finished runs; skipping this pass")
                return 0
            purged = 0
            while True:  # SUCCESS: the workflow's last step published the record
                ids = await _ended(SUCCESS, cutoff)
                purged += await self._delete(conn, ids, cutoff)
                if len(ids) < BATCH:
                    break
            # CANCELLED: a run DBOS gave up on ends so once its record is stored, but anyone may cancel a workflow
            # (DBOS's admin API, Conductor) before its run was recorded: only those RunsService holds go, a batch per
            # pass (they are few).
            cancelled = await _ended(CANCELLED, cutoff)
            purged += await self._delete(conn, [i for i in cancelled if await self._is_recorded(i)], cutoff)
            for name in self._journal_less:
                while True:
                    ids = await _ended(SUCCESS, cutoff, name)
                    if ids:
                        await DBOS.delete_workflows_async(ids)
                        log.info("purged finished workflows", extra={"workflow": name, "count": len(ids)})
                    if len(ids) < BATCH:
                        break
            return purged

    async def _is_recorded(self, run_id: str) -> bool:
        try:
            return await self._recorded(run_id)
        except ExecutionError as exc:
            log.info("cannot tell whether RunsService holds the run; kept", extra={"run_id": run_id, "why": str(exc)})
            return False

    async def _delete(self, conn: psycopg.AsyncConnection[Any], ids: list[str], cutoff: datetime) -> int:
        if not ids:
            return 0
        async with conn.transaction():
            for statement in _DELETES:
                await conn.execute(statement, {"ids": ids})
        await DBOS.delete_workflows_async(ids)
        log.info(
            "purged finished durable runs from the execution database",
            extra={"runs": len(ids), "finished_before": cutoff.isoformat()},
        )
        return len(ids)
