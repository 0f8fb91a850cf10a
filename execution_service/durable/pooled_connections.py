"""Work on one connection of a psycopg_pool pool, which the caller's cancellation cannot cut in half.

psycopg_pool (3.3.3, its newest release) loses a connection when the task that holds or awaits it is cancelled at an
unlucky moment, for instance while `putconn` waits for the pool's lock to put it back: the connection is then neither
in the pool nor with anyone, and the pool still counts it. Once it has lost `max_size` of them it hands out nothing
and never opens another: every statement fails with PoolTimeout until the process restarts. Cancellation is everyday
here (a client closing its stream while its handler reads a run's journal, `asyncio.timeout` around a follower): a
replica was seen to lose its whole journal pool within a second of a burst of 50 such streams, after which its runs
failed INTERNAL and every start through it hung (tests/execution_service/e2e/test_admission_over_replicas.py, about
one run in eight; tests/execution_service/durable/test_pooled_connections.py makes the moment happen).

So the checkout, the work and the return happen in a task of their own. A cancelled caller stops waiting at once;
the task goes on to the end (the work is one statement or one short transaction, the wait for a connection is
bounded by `timeout_s`) and gives the connection back. What such a task ends with is logged at DEBUG: nobody waits
for it any more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from agentrun_core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

T = TypeVar("T")

Work = Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]


class PooledConnections:
    def __init__(self, pool: AsyncConnectionPool) -> None:
        """`pool`: not opened yet (`open` opens it)."""
        self._pool = pool
        self._uses: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        await self._pool.open()

    async def close(self) -> None:
        """Stops the work still going on (its callers left) and closes the pool."""
        await cancel_and_wait(*self._uses)
        await self._pool.close()

    async def run(self, work: Work[T], *, timeout_s: float) -> T:
        """`work` on one of the pool's connections (waiting at most `timeout_s` for one: PoolTimeout), which goes
        back to the pool whatever happens to the caller."""
        use = asyncio.ensure_future(self._use(work, timeout_s))
        self._uses.add(use)
        use.add_done_callback(self._uses.discard)
        try:
            return await asyncio.shield(use)
        except asyncio.CancelledError:
            if not use.done():
                use.add_done_callback(_log_unawaited)
            raise

    async def _use(self, work: Work[T], timeout_s: float) -> T:
        async with self._pool.connection(timeout=timeout_s) as conn:
            return await work(conn)


def _log_unawaited(use: asyncio.Task[Any]) -> None:
    if use.cancelled():
        return
    error = use.exception()
    if error is not None:
        log.debug("work on a pooled connection whose caller left failed", extra={"error": repr(error)})
