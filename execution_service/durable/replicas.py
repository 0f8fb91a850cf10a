"""Replica heartbeats and takeover. Each replica writes its heartbeat to agentrun.replicas every interval (and marks
itself silent when it stops); a replica silent for longer than the takeover timeout has its pending runs recovered by
one survivor: the survivor locks the
dead replica's row (FOR UPDATE SKIP LOCKED, so several survivors never take the same replica), has DBOS recover that
executor's pending workflows, and deletes the row in the same transaction. A replica that restarts with the same id
resumes its own runs at launch (DBOS) and heartbeats again.

A replica takes over others only once it has itself heartbeat for the takeover timeout, without a failure and without
a gap of more than half the timeout between two beats (a database that hangs rather than refuses). Silence is
evidence of death only while the database could be reached: after an outage of the database longer than the timeout
every replica's heartbeat is stale, and the first to beat again would otherwise take over the runs the others are
still executing (each such run would execute twice). A replica that starts (a replacement) takes a dead predecessor's
runs one timeout after its start at the earliest. A replica that stopped and handed its runs over (its heartbeat set
to the epoch: `stop`) said so itself: any survivor takes its runs at once."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import psycopg
from dbos import DBOS

from execution_service.durable.periodic import Periodic

log = logging.getLogger(__name__)


def recover_runs_of(replica_id: str) -> list[str]:
    """Makes the pending workflows of executor `replica_id` run again (on whichever replica dequeues them first).
    The one call of DBOS's underscore API `_recover_pending_workflows`."""
    handles = DBOS._recover_pending_workflows([replica_id])
    return [handle.get_workflow_id() for handle in handles]


class ReplicaHeartbeat:
    def __init__(
        self,
        url: str,
        replica_id: str,
        *,
        interval_s: float,
        takeover_timeout_s: float,
        took_over: Callable[[], None] = lambda: None,
    ) -> None:
        """`took_over()` is called after runs of a silent replica were recovered (they wait in their queue again)."""
        self._took_over = took_over
        self._url = url
        self._replica_id = replica_id
        self._interval_s = interval_s
        self._timeout_s = takeover_timeout_s
        # Whether another replica heartbeat within the takeover timeout, as of the last beat (True until then).
        self.others_alive = True
        # Since when (time.monotonic) every beat succeeded, each soon after the one before; None before the first,
        # and after a failed one.
        self._beating_since: float | None = None
        self._last_beat: float | None = None
        # A longer gap between two beats (a database that hung rather than refused, a stalled process) starts the
        # window again: the database may not have been reachable in between, for the others either.
        self._max_gap_s = max(takeover_timeout_s / 2, 2 * interval_s)
        self._beats = Periodic(
            self._beat_and_take_over,
            interval_s=interval_s,
            name="durable-heartbeat",
            chore="the heartbeat and takeover",
            failed="heartbeat or takeover failed; trying again next interval",
            log=log,
        )

    async def beat(self) -> None:
        """Writes this replica's heartbeat, and reads whether another replica is alive (`others_alive`)."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            cursor = await conn.execute(
                "WITH beat AS (INSERT INTO agentrun.replicas (replica_id) VALUES (%s) "
                "ON CONFLICT (replica_id) DO UPDATE SET heartbeat_at = now()) "
                "SELECT EXISTS (SELECT 1 FROM agentrun.replicas WHERE replica_id <> %s "
                "AND heartbeat_at > now() - make_interval(secs => %s))",
                (self._replica_id, self._replica_id, self._timeout_s),
            )
            row = await cursor.fetchone()
        self.others_alive = bool(row and row[0])

    def heard_from_another(self) -> None:
        """Another replica was heard from (its NOTIFY): alive, whatever the last beat read."""
        self.others_alive = True

    async def take_over(self, *, handed_over_only: bool = False) -> dict[str, list[str]]:
        """Recovers the runs of every replica silent for longer than the timeout (only those that handed their runs
        over when stopping, with `handed_over_only`), that no other survivor is taking over right now; returns the
        run ids recovered per replica."""
        taken: dict[str, list[str]] = {}
        async with await psycopg.AsyncConnection.connect(self._url) as conn, conn.transaction():
            cursor = await conn.execute(
                "SELECT replica_id, heartbeat_at FROM agentrun.replicas WHERE replica_id <> %s "
                "AND heartbeat_at < now() - make_interval(secs => %s) "
                "AND (NOT %s OR heartbeat_at = 'epoch') FOR UPDATE SKIP LOCKED",
                (self._replica_id, self._timeout_s, handed_over_only),
            )
            for replica_id, heartbeat_at in await cursor.fetchall():
                runs = await asyncio.to_thread(recover_runs_of, replica_id)
                await conn.execute("DELETE FROM agentrun.replicas WHERE replica_id = %s", (replica_id,))
                taken[replica_id] = runs
                log.warning(
                    "took over the runs of a silent replica",
                    extra={"replica": replica_id, "last_heartbeat": heartbeat_at.isoformat(), "runs": runs},
                )
        if taken:
            self._took_over()
        return taken

    def start(self) -> None:
        self._beats.start()

    async def stop(self) -> None:
        """Stops the heartbeat and hands this replica's runs over: a stopping replica (its runs left pending by the
        shutdown's grace period) is silent from now on, so the next survivor to look takes its runs at once rather
        than after the takeover timeout. A replica restarted with the same id resumes whatever is still its own."""
        await self._beats.stop()
        try:
            async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                await conn.execute(
                    "UPDATE agentrun.replicas SET heartbeat_at = 'epoch' WHERE replica_id = %s", (self._replica_id,)
                )
        except psycopg.Error:
            log.exception("could not hand this replica's runs over; survivors take them after the takeover timeout")

    async def _beat_and_take_over(self) -> None:
        try:
            await self.beat()
        except BaseException:
            self._beating_since = None  # the database could not be reached: nor, maybe, by the others
            raise
        now = time.monotonic()
        if self._beating_since is None or self._last_beat is None or now - self._last_beat > self._max_gap_s:
            self._beating_since = now
        self._last_beat = now
        await self.take_over(handed_over_only=not self.may_take_over(now))

    def may_take_over(self, now: float) -> bool:
        """Whether this replica has heartbeat, without a failure or a long gap, for the takeover timeout, so that
        another's silence means it is gone (see the module's doc); before, it takes only the runs handed over."""
        return self._beating_since is not None and now - self._beating_since >= self._timeout_s
