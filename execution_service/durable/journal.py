"""A durable run's journal in the execution database: its event stream and the checkpointed results of its calls.

Why not DBOS's own streams and steps: each `DBOS.write_stream` and `DBOS.run_step` is a SQLAlchemy transaction of
three to five statements run in a worker thread (check the operation was not recorded, check the workflow's owner,
insert, record the operation's output, each statement compiled and each connection pinged when checked out of the
pool): ~3-4.5 ms of CPU each on this machine, measured (docs/performance.md, "Durable mode's CPU"), against 0.25-0.35
ms for one prepared statement on an open psycopg connection. DBOS keeps the workflow (start, recovery on restart and
takeover, the queue); the journal keeps what a run writes while it runs.

- Entries (`agentrun.journal_entries`, key (run id, offset)): `append` inserts one entry with `ON CONFLICT DO
  NOTHING`, so a resumed run that writes an entry again (its replay) changes nothing, and NOTIFYs channel
  `agentrun_journal` with the run id when the entry is new. A replica where someone follows a run (a client watching
  a run another replica executes) keeps one LISTEN connection and wakes the readers of that run that wait for more
  (`follow`); it stops listening when nobody has followed a run for `LISTEN_IDLE_S`, so a replica that only executes
  runs does not read the notifications of every entry. A reader also looks again every `FOLLOW_POLL_S`, so a lost
  notification (the listener reconnecting) delays it, never stalls it.
- Checkpoints (`agentrun.journal_checkpoints`, key (run id, operation number)): `checkpoint` inserts a call's
  result the same way and returns the result recorded first: two executions of one run (which DBOS's recovery
  prevents) would still go on with the same result.

Statements run on a few autocommit connections (a psycopg_pool of at most `POOL_SIZE`, opened as needed, used
through `pooled_connections` so that a cancelled reader cannot lose one), each statement prepared once per
connection. Writes are batched: a
write that comes while `WRITERS` batches are being written joins the next batch, written in one transaction (one
commit, one WAL flush for all), so a thousand runs writing at once do not queue behind one commit each. Every
statement is idempotent, so one that fails because its connection broke is tried again on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from contextlib import aclosing
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolClosed

from agentrun_core.failure_streak import FailureStreak
from agentrun_core.tasks import cancel_and_wait
from execution_service.durable.pooled_connections import PooledConnections

log = logging.getLogger(__name__)

T = TypeVar("T")

CHANNEL = "agentrun_journal"
# The journal's connections in pg_stat_activity.
APPLICATION = "agentrun_journal"
POOL_SIZE = 4
# Batches of writes in flight at once, and the most writes in one.
WRITERS = 2
MAX_BATCH = 200
# How long a follower waits for a notification before it looks at the journal again anyway.
FOLLOW_POLL_S = 1.0
# How long the listener goes on listening after the last follower left, and how long a follower waits for it to start.
LISTEN_IDLE_S = 30.0
LISTEN_START_S = 5.0
# How long a statement waits for one of the pool's connections (busy, or the database not answering).
CONNECTION_WAIT_S = 10.0
# How often a statement whose connection broke (or never came) is tried again on a new one, and how long apart: more
# attempts than pooled connections, so a database that restarted (every pooled connection dead) costs no statement.
_ATTEMPTS = POOL_SIZE + 1
_RETRY_S = 0.2
_RECONNECT_S = 1.0

_APPEND = (
    'WITH new AS (INSERT INTO agentrun.journal_entries (run_id, "offset", value) VALUES (%(run)s, %(offset)s, '
    "%(value)s) ON CONFLICT DO NOTHING RETURNING run_id) SELECT pg_notify('" + CHANNEL + "', run_id) FROM new"
)
_ENTRIES = (
    'SELECT "offset", value FROM agentrun.journal_entries WHERE run_id = %(run)s AND "offset" >= %(offset)s '
    'ORDER BY "offset"'
)
_ENTRY = 'SELECT value FROM agentrun.journal_entries WHERE run_id = %(run)s AND "offset" = %(offset)s'
_LAST = 'SELECT "offset", value FROM agentrun.journal_entries WHERE run_id = %(run)s ORDER BY "offset" DESC LIMIT 1'
_CHECKPOINT = (
    "INSERT INTO agentrun.journal_checkpoints (run_id, operation, name, value) VALUES (%(run)s, %(op)s, %(name)s, "
    "%(value)s) ON CONFLICT DO NOTHING RETURNING operation"
)
_CHECKPOINT_OF = "SELECT name, value FROM agentrun.journal_checkpoints WHERE run_id = %(run)s AND operation = %(op)s"
_CHECKPOINTS = "SELECT operation, name, value FROM agentrun.journal_checkpoints WHERE run_id = %(run)s"
_CHECKPOINT_NAMED = (
    "SELECT value FROM agentrun.journal_checkpoints WHERE run_id = %(run)s AND name = %(name)s "
    "ORDER BY operation LIMIT 1"
)


class JournalClosed(RuntimeError):
    """The journal was used before `open` or after `close`."""


class Journal:
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        """`url`: the execution database, as psycopg.connect takes it."""
        self._url = url
        self._pool_size = pool_size
        self._connections: PooledConnections | None = None
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._listener: asyncio.Task[None] | None = None
        self._listener_failures = FailureStreak(
            log, "the journal listener", f"the journal listener lost its connection; reconnecting in {_RECONNECT_S} s"
        )
        self._listening = asyncio.Event()
        self._batch: list[_Write] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._writing = 0  # writers that may still take writes (a done task leaves _writers a step later)

    async def open(self) -> None:
        """Makes the journal usable (connections open as they are needed)."""
        self._connections = PooledConnections(
            AsyncConnectionPool(
                self._url,
                min_size=0,
                max_size=self._pool_size,
                kwargs={"autocommit": True, "application_name": APPLICATION},
                open=False,
                name="journal",
                # A failed connect is retried with a growing backoff until this; the next statement then starts
                # afresh, so the journal is back within seconds of the database (the default, 300 s, let backoffs
                # reach 128 s).
                reconnect_timeout=CONNECTION_WAIT_S,
            )
        )
        await self._connections.open()

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        await cancel_and_wait(*self._writers, listener)
        self._fail_all([])  # writes left to a writer stopped before it began
        connections, self._connections = self._connections, None
        if connections is not None:
            await connections.close()
        self._wake_all()

    # --- entries ---------------------------------------------------------------------------------------------

    async def append(self, run_id: str, offset: int, value: bytes) -> None:
        """Writes the run's entry at `offset` unless it is there already (a replay), and wakes its followers."""
        await self._write(_APPEND, {"run": run_id, "offset": offset, "value": value})

    async def entries(self, run_id: str, from_offset: int = 0) -> list[tuple[int, bytes]]:
        """The run's entries from `from_offset` on, in order, as (offset, value)."""
        rows = await self._run(_ENTRIES, {"run": run_id, "offset": from_offset}, fetch=True)
        return [(int(offset), bytes(value)) for offset, value in rows]

    async def last(self, run_id: str) -> tuple[int, bytes] | None:
        """The run's last entry and its offset (None for a run with none)."""
        rows = await self._run(_LAST, {"run": run_id}, fetch=True)
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    async def entry(
        self, run_id: str, offset: int, wait_s: float, *, unless: Callable[[], bool] | None = None
    ) -> bytes | None:
        """The run's entry at `offset`, waiting up to `wait_s` for it to be written; None when it is not (or, once
        the run's followers were woken, `unless()` holds: `wake`)."""
        rows = await self._run(_ENTRY, {"run": run_id, "offset": offset}, fetch=True)
        if rows or wait_s <= 0:
            return bytes(rows[0][0]) if rows else None
        try:
            async with asyncio.timeout(wait_s), aclosing(self.follow(run_id, offset, unless=unless)) as entries:
                async for at, value in entries:
                    if at == offset:
                        return value
                    break
        except TimeoutError:
            pass
        return None

    def wake(self, run_id: str) -> None:
        """Wakes this process's followers of the run (they read again, and look at their `unless`)."""
        for wake in self._waiters.get(run_id, ()):
            wake.set()

    async def follow(
        self, run_id: str, from_offset: int = 0, *, unless: Callable[[], bool] | None = None
    ) -> AsyncGenerator[tuple[int, bytes]]:
        """The run's entries from `from_offset` on, in order, each once, waiting for more as they are written (the
        caller stops reading when it has what it needs); it ends when, woken, `unless()` holds."""
        wake = asyncio.Event()
        self._waiters[run_id].add(wake)
        try:
            next_offset = from_offset
            while True:
                await self._ensure_listening()
                wake.clear()  # before the read: a notification that comes after it wakes the wait below
                rows = await self.entries(run_id, next_offset)
                for offset, value in rows:
                    if offset != next_offset:
                        break  # not written yet in between (two writers of one run): read again when it is
                    yield offset, value
                    next_offset = offset + 1
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(FOLLOW_POLL_S):
                        await wake.wait()
                if unless is not None and unless():
                    return
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(wake)
                if not waiters:
                    del self._waiters[run_id]

    # --- checkpoints -----------------------------------------------------------------------------------------

    async def checkpoint(self, run_id: str, operation: int, name: str, value: bytes) -> tuple[str, bytes] | None:
        """Records the result of the run's operation unless one is recorded already: None when this one is recorded,
        else the one recorded first (its name and value)."""
        params = {"run": run_id, "op": operation, "name": name, "value": value}
        if await self._write(_CHECKPOINT, params):
            return None
        rows = await self._run(_CHECKPOINT_OF, params, fetch=True)
        return str(rows[0][0]), bytes(rows[0][1])

    async def checkpoints(self, run_id: str) -> dict[int, tuple[str, bytes]]:
        """Every checkpointed result of the run, by operation number (read once when a run resumes)."""
        rows = await self._run(_CHECKPOINTS, {"run": run_id}, fetch=True)
        return {int(op): (str(name), bytes(value)) for op, name, value in rows}

    async def checkpoint_named(self, run_id: str, name: str) -> bytes | None:
        """The value of the run's first checkpointed operation named `name` (None when none is recorded)."""
        rows = await self._run(_CHECKPOINT_NAMED, {"run": run_id, "name": name}, fetch=True)
        return bytes(rows[0][0]) if rows else None

    # --- connections -----------------------------------------------------------------------------------------

    async def _run(self, sql: str, params: dict[str, Any], *, fetch: bool = False) -> Sequence[tuple[Any, ...]]:
        async def run(conn: psycopg.AsyncConnection[Any]) -> Sequence[tuple[Any, ...]]:
            cursor = await conn.execute(sql, params, prepare=True)
            return await cursor.fetchall() if fetch else []

        return await self._on_connection(run)

    async def _write(self, sql: str, params: dict[str, Any]) -> Sequence[tuple[Any, ...]]:
        """Runs the write in the next batch; its rows."""
        write = _Write(sql, params, asyncio.get_running_loop().create_future())
        self._batch.append(write)
        if self._writing < WRITERS:
            self._writing += 1  # counted down by the writer itself as it leaves: never a write without a writer
            writer = asyncio.create_task(self._write_batches(), name="durable-journal-writer")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await write.rows

    async def _write_batches(self) -> None:
        try:
            while self._batch:
                await self._write_batch()
        finally:
            self._writing -= 1  # in the same step as the last look at _batch: a write added after it starts one

    async def _write_batch(self) -> None:
        batch, self._batch = self._batch[:MAX_BATCH], self._batch[MAX_BATCH:]
        try:
            results = await self._on_connection(functools.partial(_execute, batch=batch))
        except asyncio.CancelledError:
            self._fail_all(batch)
            raise
        except (psycopg.OperationalError, JournalClosed) as exc:
            for write in batch:  # the database, not a write: each alone would fail the same way, one by one
                write.fail(exc)
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0].fail(exc)
                return
            # One write's error undid the batch: each write again on its own, so only that one fails.
            for write in batch:
                try:
                    write.done((await self._on_connection(functools.partial(_execute, batch=[write])))[0])
                except asyncio.CancelledError:
                    self._fail_all(batch)
                    raise
                except Exception as error:
                    write.fail(error)
            return
        for write, rows in zip(batch, results, strict=True):
            write.done(rows)

    def _fail_all(self, batch: list[_Write]) -> None:
        """The journal closes: every write not done yet fails (its caller would otherwise wait for good)."""
        for write in (*batch, *self._batch):
            write.fail(JournalClosed("the durable journal closed before the write was done"))
        self._batch = []

    async def _on_connection(self, work: Callable[[psycopg.AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`work` on one of the pool's connections; tried again on another when the connection broke or none came in
        CONNECTION_WAIT_S (psycopg_pool's PoolTimeout is an OperationalError). The pool drops a connection returned
        broken, or in the middle of a statement (cancelled)."""
        for attempt in range(1, _ATTEMPTS + 1):
            if self._connections is None:
                raise JournalClosed("the durable journal is not open")
            try:
                return await self._connections.run(work, timeout_s=CONNECTION_WAIT_S)
            except PoolClosed:
                raise JournalClosed("the durable journal closed") from None
            except psycopg.OperationalError as exc:
                if attempt == _ATTEMPTS:
                    raise
                log.warning("a journal connection broke; trying again", extra={"attempt": attempt, "error": str(exc)})
                await asyncio.sleep(_RETRY_S * attempt)
        raise AssertionError("unreachable")

    # --- notifications ---------------------------------------------------------------------------------------

    async def _ensure_listening(self) -> None:
        """Starts the listener unless it runs, and waits (at most LISTEN_START_S) until it listens; a follower that
        goes on without it finds new entries by looking again."""
        for _ in range(2):  # once more if it was stopping as this follower came
            if self._listening.is_set():
                return
            if self._listener is None or self._listener.done():
                self._listener = asyncio.create_task(self._listen(), name="durable-journal-listener")
            listening = asyncio.create_task(self._listening.wait())
            try:
                await asyncio.wait(
                    {listening, self._listener}, timeout=LISTEN_START_S, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                listening.cancel()

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True, application_name=APPLICATION
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._listener_failures.succeeded()
                    self._listening.set()
                    self._wake_all()  # entries written while it was not listening
                    while True:
                        async for notice in conn.notifies(timeout=LISTEN_IDLE_S):
                            self.wake(notice.payload)
                        if not self._waiters:
                            self._listening.clear()
                            return  # nobody follows a run here: the next follower starts listening again
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._listener_failures.failed(error)
            finally:
                self._listening.clear()
            await asyncio.sleep(_RECONNECT_S)

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for wake in waiters:
                wake.set()


class _Write:
    def __init__(self, sql: str, params: dict[str, Any], rows: asyncio.Future[Sequence[tuple[Any, ...]]]) -> None:
        self.sql = sql
        self.params = params
        self.rows = rows

    def done(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if not self.rows.done():  # else its writer stopped waiting (cancelled)
            self.rows.set_result(rows)

    def fail(self, error: Exception) -> None:
        if not self.rows.done():
            self.rows.set_exception(error)


async def _execute(conn: psycopg.AsyncConnection[Any], batch: list[_Write]) -> list[Sequence[tuple[Any, ...]]]:
    """The batch's writes, in one transaction when there are several (one commit)."""
    if len(batch) == 1:
        cursor = await conn.execute(batch[0].sql, batch[0].params, prepare=True)
        return [await cursor.fetchall()]
    results: list[Sequence[tuple[Any, ...]]] = []
    async with conn.transaction():
        for write in batch:
            cursor = await conn.execute(write.sql, write.params, prepare=True)
            results.append(await cursor.fetchall())
    return results


_journal: Journal | None = None


def bind(journal: Journal | None) -> None:
    """Makes `journal` the one this process's durable runs and followers use (one replica is one process)."""
    global _journal
    _journal = journal


def current() -> Journal:
    if _journal is None:
        raise JournalClosed("no durable journal is bound in this process (execution_service.durable.journal)")
    return _journal
