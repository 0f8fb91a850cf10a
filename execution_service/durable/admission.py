"""Admission by queue in durable mode: every run's workflow enters one DBOS queue shared by all replicas, at most
`worker_concurrency` of its runs execute on a replica and `global_concurrency` on all; any replica with a free slot
takes the next one (each replica polls the queue when woken: a run entered, a slot freed; and every
`polling_interval_s` otherwise: durable.queue_wakeups).

A run's admission record (agentrun.queued_runs) is written before its workflow is enqueued: its RunQueued event (what
a follower on any replica sends first), whether its starter showed it QUEUED, and the deadline of its queue timeout.
The run's own workflow is the one writer of the run's stream and of its end, also for a run that ends in the queue:
cancelling a queued run (CancelRun) or its queue timeout (the sweeper, every `SWEEP_INTERVAL_S` on each replica)
moves its still-ENQUEUED workflow to the unlimited queue `ENDING_QUEUE`, with one conditional UPDATE of DBOS's
workflow_status (`_move_to_ending_queue`, the one place that writes a DBOS table); the workflow starts at once there,
its first step (`leave`) sees the cancel or the expired deadline, and it ends CANCELLED or TIMED_OUT (QUEUE_TIMEOUT)
without a RunStarted. A workflow already dequeued is not moved: the usual cancel path applies.

Whether a run has to wait, and the queue's own bound (AGENTRUN_MAX_QUEUED_RUNS), are counted over these records
(`agentrun.enter_queue`: entered and not dequeued = waiting, dequeued and not finished = executing) rather than over
DBOS's ENQUEUED workflows: a record is written before its workflow is enqueued, inside a transaction that holds an
advisory lock (one statement: the lock is held only inside PostgreSQL), so runs entering at the same moment on several
replicas count each other and the bound holds exactly; whether a run waits is still a prediction (DBOS decides who
dequeues what, replicas come and go). DBOS's workflow_status is touched in two named places: `_move_to_ending_queue`
(the one write) and `_delete_stale_records` (a read by primary key, once a minute, to drop the records of runs whose
workflow ended without deleting its record)."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from execution_service.durable.periodic import Periodic
from execution_service.durable.pooled_connections import PooledConnections, Work
from execution_service.errors import ExecutionDatabaseUnavailable, QueueFull

log = logging.getLogger(__name__)

T = TypeVar("T")

# The shared queue every run enters, and the unlimited one a queued run is moved to when it must end without starting.
RUN_QUEUE = "agentrun_runs"
ENDING_QUEUE = "agentrun_runs_ending"
# The ending queue is polled less often than the run queue when nothing wakes it: it only carries cancels and queue
# timeouts of queued runs, and the replica that moves a run there wakes its own pollers (queue_wakeups).
ENDING_QUEUE_POLLING_INTERVAL_S = 5.0
# The NOTIFY channel on which a replica tells the others that runs entered the shared queue (payload: its replica id).
ENTERED_CHANNEL = "agentrun_run_entered"
# How often each replica looks for queued runs past their queue timeout, and for stale admission records.
SWEEP_INTERVAL_S = 1.0
STALE_SWEEP_INTERVAL_S = 60.0
# Connections to the execution database this module holds at once per replica (a burst of run starts waits for one
# rather than exhausting PostgreSQL's max_connections).
MAX_CONNECTIONS = 4
# How long a statement waits for a free connection before the database counts as not answering.
CONNECT_TIMEOUT_S = 10.0
# DBOS's system tables (DBOS's default system schema, which agentrun does not change).
_WORKFLOW_STATUS = "dbos.workflow_status"


@dataclass(frozen=True, slots=True)
class QueueLimits:
    per_replica: int
    # None: no global limit.
    global_limit: int | None
    max_queued: int
    queue_timeout_s: float
    polling_interval_s: float

    @property
    def worker_concurrency(self) -> int:
        """The per-replica limit as DBOS takes it (DBOS refuses a worker limit above the global one)."""
        return self.per_replica if self.global_limit is None else min(self.per_replica, self.global_limit)


@dataclass(frozen=True, slots=True)
class Dequeued:
    """What the run's workflow found when it left the queue (a checkpointed step: replayed, not read again, on a
    resumption). `start_time`: when it left; `cancelled` / `timed_out`: it ends there without starting."""

    start_time: datetime
    replica: str
    cancelled: bool = False
    timed_out: bool = False


class DurableAdmission:
    def __init__(self, url: str, limits: QueueLimits) -> None:
        self._url = url
        self.limits = limits
        self._sweeper: Periodic | None = None
        self._stale_at = 0.0
        # A few open connections, reused: opening one per statement cost more CPU than the statements.
        self._connections = PooledConnections(
            AsyncConnectionPool(
                url, min_size=1, max_size=MAX_CONNECTIONS, kwargs={"autocommit": True}, open=False, name="admission"
            )
        )

    async def open(self) -> None:
        await self._connections.open()

    async def _run(self, work: Work[T]) -> T:
        """`work` on a connection to the execution database (at most MAX_CONNECTIONS at once). A database that does
        not answer is ExecutionDatabaseUnavailable (UNAVAILABLE to a client: retryable)."""
        try:
            return await self._connections.run(work, timeout_s=CONNECT_TIMEOUT_S)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.error("the execution database did not answer", extra={"error": str(exc)})
            raise ExecutionDatabaseUnavailable(
                "the execution database (the shared run queue) did not answer; retry later"
            ) from exc

    async def enter(self, run_id: str, queued: bytes) -> bool:
        """Writes the run's admission record before its workflow is enqueued; returns whether the run has to wait
        (the runs executing and waiting fill every slot of the live replicas, or the global limit), i.e. whether its
        starter shows it QUEUED. Raises QueueFull when it would wait and the queue holds its bound already. Entries
        are serialized over all replicas (a transaction-scoped advisory lock), so each counts the ones before it: one
        statement (agentrun.enter_queue, durable.schema), so the lock is never held across a round trip to a replica
        whose event loop is busy (a burst held it for whole loop turns, and the other replicas' admission connections
        waited on it until their runs' first steps timed out)."""
        limits = self.limits
        row = await self._run(
            functools.partial(
                _fetch_one,
                "SELECT admitted, waits, occupied, capacity FROM agentrun.enter_queue(%s, %s, %s, %s, %s, %s)",
                (
                    run_id,
                    queued,
                    limits.worker_concurrency,
                    limits.global_limit,
                    limits.max_queued,
                    limits.queue_timeout_s,
                ),
            )
        )
        assert row is not None
        admitted, waits, occupied, capacity = bool(row[0]), bool(row[1]), int(row[2]), int(row[3])
        if not admitted:
            raise QueueFull(
                f"{min(occupied, capacity)} runs are executing or starting over the replicas "
                f"(AGENTRUN_MAX_CONCURRENT_RUNS={limits.per_replica} per replica"
                + (
                    f", AGENTRUN_GLOBAL_MAX_CONCURRENT_RUNS={limits.global_limit}"
                    if limits.global_limit is not None
                    else ""
                )
                + f") and the shared queue holds {occupied - capacity} more, its bound (AGENTRUN_MAX_QUEUED_RUNS="
                f"{limits.max_queued}); retry later"
                + (
                    ", or raise AGENTRUN_GLOBAL_MAX_CONCURRENT_RUNS or AGENTRUN_MAX_QUEUED_RUNS"
                    if limits.global_limit is not None and capacity >= limits.global_limit
                    else ", add replicas, or raise AGENTRUN_MAX_QUEUED_RUNS"
                )
            )
        return waits

    async def announce_entered(self, replica: str) -> None:
        """Tells every replica listening on ENTERED_CHANNEL that runs entered the shared queue (queue_wakeups)."""
        await self._run(functools.partial(_execute, "SELECT pg_notify(%s, %s)", (ENTERED_CHANNEL, replica)))

    async def abandon(self, run_id: str) -> None:
        """The run's workflow could not be enqueued: its admission record goes."""
        await self._run(functools.partial(_execute, "DELETE FROM agentrun.queued_runs WHERE run_id = %s", (run_id,)))

    async def leave(self, run_id: str, replica: str, now: datetime) -> Dequeued:
        """The run's workflow left the queue at `now` on `replica` (its first step): marks its record and tells
        whether it must end there (a stored cancel request, or its queue timeout expired)."""
        row = await self._run(
            functools.partial(
                _fetch_one,
                "UPDATE agentrun.queued_runs SET dequeued_at = now() WHERE run_id = %s "
                "RETURNING deadline IS NOT NULL AND deadline <= now(), "
                "EXISTS (SELECT 1 FROM agentrun.cancel_requests c WHERE c.run_id = queued_runs.run_id)",
                (run_id,),
            )
        )
        if row is None:  # no record (removed by hand): nothing ends it here
            return Dequeued(now, replica)
        cancelled = bool(row[1])
        return Dequeued(now, replica, cancelled=cancelled, timed_out=bool(row[0]) and not cancelled)

    async def queued_event(self, run_id: str) -> bytes | None:
        """The run's RunQueued event as its followers send it first: while it waits, and after it left the queue when
        its starter showed it QUEUED. None: no such record."""
        row = await self._run(
            functools.partial(
                _fetch_one,
                "SELECT queued FROM agentrun.queued_runs WHERE run_id = %s AND (shown OR dequeued_at IS NULL)",
                (run_id,),
            )
        )
        return None if row is None else bytes(row[0])

    async def forget(self, run_id: str) -> None:
        """The run ended: its record goes (best effort; a record left behind holds no run data)."""
        try:
            await self._run(
                functools.partial(_execute, "DELETE FROM agentrun.queued_runs WHERE run_id = %s", (run_id,))
            )
        except (psycopg.Error, ExecutionDatabaseUnavailable):
            log.exception("could not delete a finished run's admission record", extra={"run_id": run_id})

    async def end_queued(self, run_id: str) -> bool:
        """Moves the run's workflow, if it still waits in the shared queue, to the ending queue (where it starts at
        once and ends, CancelRun). False: it left the queue already."""
        moved = await self._run(functools.partial(_move_to_ending_queue, which="workflow_uuid = %s", params=(run_id,)))
        return moved > 0

    async def sweep(self) -> int:
        """Moves every queued run past its queue timeout to the ending queue; returns how many."""
        return await self._run(
            functools.partial(
                _move_to_ending_queue,
                which="workflow_uuid IN (SELECT run_id FROM agentrun.queued_runs "
                "WHERE dequeued_at IS NULL AND deadline IS NOT NULL AND deadline <= now())",
                params=(),
            )
        )

    async def delete_stale(self) -> int:
        return await self._run(_delete_stale_records)

    def start_sweeper(self, moved: Callable[[], None]) -> None:
        """Every SWEEP_INTERVAL_S, moves the queued runs past their queue timeout to the ending queue and then calls
        `moved()` (the replica polls its queues); every STALE_SWEEP_INTERVAL_S, deletes stale admission records."""
        self._sweeper = Periodic(
            functools.partial(self._sweep_once, moved),
            interval_s=SWEEP_INTERVAL_S,
            name="durable-queue-sweeper",
            chore="the queue timeout sweep",
            failed=f"the queue timeout sweep failed; trying again in {SWEEP_INTERVAL_S} s",
            log=log,
        )
        self._sweeper.start()

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            await sweeper.stop()

    async def close(self) -> None:
        await self._connections.close()

    async def _sweep_once(self, moved: Callable[[], None]) -> None:
        if self.limits.queue_timeout_s > 0:
            timed_out = await self.sweep()
            if timed_out:
                moved()
                log.info("queued runs past their queue timeout end now", extra={"runs": timed_out})
        now = asyncio.get_running_loop().time()
        if now >= self._stale_at:
            self._stale_at = now + STALE_SWEEP_INTERVAL_S
            stale = await self.delete_stale()
            if stale:
                log.warning("deleted stale admission records", extra={"records": stale})


async def _execute(sql: str, params: tuple[object, ...], conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.execute(sql, params)


async def _fetch_one(
    sql: str, params: tuple[object, ...], conn: psycopg.AsyncConnection[Any]
) -> tuple[Any, ...] | None:
    cursor = await conn.execute(sql, params)
    return await cursor.fetchone()


async def _delete_stale_records(conn: psycopg.AsyncConnection[Any]) -> int:
    """Deletes the admission records of runs whose workflow ended (a record `forget` could not delete) or never
    was enqueued (its starter died in between), older than a minute. Reads DBOS's workflow_status by primary key."""
    cursor = await conn.execute(
        "DELETE FROM agentrun.queued_runs q WHERE enqueued_at < now() - interval '1 minute' AND NOT EXISTS ("
        f"SELECT 1 FROM {_WORKFLOW_STATUS} w WHERE w.workflow_uuid = q.run_id "
        "AND w.status IN ('ENQUEUED', 'PENDING', 'DELAYED'))"
    )
    return cursor.rowcount


async def _move_to_ending_queue(conn: psycopg.AsyncConnection[Any], *, which: str, params: tuple[object, ...]) -> int:
    """The one write to DBOS's workflow_status: still-ENQUEUED workflows of the shared queue move to the ending
    queue. Atomic with DBOS's dequeue: a workflow a replica claimed meanwhile is PENDING and left alone."""
    cursor = await conn.execute(
        f"UPDATE {_WORKFLOW_STATUS} SET queue_name = %s WHERE status = 'ENQUEUED' AND queue_name = %s AND {which}",
        (ENDING_QUEUE, RUN_QUEUE, *params),
    )
    return cursor.rowcount
