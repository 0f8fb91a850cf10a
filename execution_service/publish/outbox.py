"""A durable local outbox of run records waiting for RunsService, plus the live-run journal for crash recovery.

One SQLite file (WAL). Table `outbox` holds one row per run: the latest RecordRunRequest bytes for that run, whether
it is terminal, a delivery state (`pending` or `parked`), the retry schedule and a version that changes on every
put. Table `live_runs` is the journal of runs this instance is executing right now (their RUNNING record); a run still
in it at start-up was interrupted by a crash (its steps are in the live-steps journal, publish.step_journal).

Durability. `put` and `mark_live` commit with synchronous=FULL: the WAL is fsynced before they return, so a record
the engine was told is accepted survives a process crash *and* an OS crash / power loss. A FULL commit measured
~0.3-0.4 ms here, so RUNNING records get it too (the caller has already handed the run id to a user at that point).
Everything else — ack, defer, park, requeue, clearing a live entry — commits with synchronous=NORMAL (no fsync; still
safe against a process crash in WAL mode). Losing one of those to a power loss only costs a resend (RunsService
upserts idempotently by run id) or a retry sooner than planned. Any later FULL commit fsyncs the whole WAL, earlier
NORMAL commits included.

Concurrency. All sqlite3 work runs on one dedicated worker thread that owns the only connection, so calls from any
number of coroutines are serialized in submission order and never block the event loop. One publisher per file:
two processes sharing a file would both send (harmless: deliveries are idempotent), but are not supported.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_Sync = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    run_id          TEXT PRIMARY KEY,
    payload         BLOB NOT NULL,
    is_terminal     INTEGER NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'parked')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error      TEXT,
    version         INTEGER NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    parked_at       REAL,
    traceparent     TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
CREATE TABLE IF NOT EXISTS live_runs (
    run_id     TEXT PRIMARY KEY,
    payload    BLOB NOT NULL,
    updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('version', 0);
"""

_ITEM_COLUMNS = "run_id, payload, is_terminal, attempts, next_attempt_at, last_error, version, traceparent"


class OutboxError(RuntimeError):
    """The outbox file cannot be used (failed to open, or already closed)."""


class PutResult(enum.StrEnum):
    CREATED = "CREATED"  # no row for the run before
    REPLACED = "REPLACED"  # a pending or parked record of the run was replaced by this newer one
    IGNORED = "IGNORED"  # a RUNNING record arrived while a terminal one is held: the terminal one was kept


@dataclass(frozen=True, slots=True)
class OutboxItem:
    run_id: str
    payload: bytes
    terminal: bool
    attempts: int
    next_attempt_at: float
    last_error: str | None
    version: int
    # W3C traceparent of the run's span when the record was put ("" if none): the send joins the run's trace.
    traceparent: str = ""


@dataclass(frozen=True, slots=True)
class ParkedItem:
    run_id: str
    payload: bytes
    terminal: bool
    attempts: int
    last_error: str | None
    parked_at: float
    version: int


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    parked: int
    live: int


class Outbox:
    """The outbox file: `Outbox(path)` (opening errors surface on first use) or `await Outbox.open(path)`."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"outbox:{self._path.name}")
        self._conn: sqlite3.Connection | None = None
        self._sync: _Sync | None = None
        self._open_error: BaseException | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        # The executor runs jobs in submission order: every later call sees the connection (or the error).
        self._executor.submit(self._connect)

    @classmethod
    async def open(cls, path: Path) -> Outbox:
        outbox = cls(path)
        await outbox.counts()  # surfaces an opening error here rather than on the first put
        return outbox

    @property
    def path(self) -> Path:
        return self._path

    # --- records -----------------------------------------------------------------------------------------------

    async def put(
        self,
        run_id: str,
        payload: bytes,
        terminal: bool,
        *,
        mark_live: bool = False,
        replace_terminal: bool = True,
        traceparent: str = "",
    ) -> PutResult:
        """Stores the latest record of a run durably (fsynced) before returning.

        A terminal record replaces whatever the run had (pending or parked) and removes the run from the live
        journal in the same transaction. A RUNNING record replaces a RUNNING one but never a terminal one
        (IGNORED). With `mark_live`, a stored RUNNING record also becomes the run's live-journal snapshot. With
        `replace_terminal=False` a terminal record does not replace a terminal one either (used by recovery, so a
        synthesized INTERRUPTED record never overwrites the run's real ending). `traceparent` is kept with the record
        so its delivery is traced in the run's trace.
        """
        if not run_id:
            raise ValueError("run_id must not be empty")
        return await self._call(self._put, run_id, payload, terminal, mark_live, replace_terminal, traceparent)

    async def due(
        self, now: float, limit: int, exclude: Collection[str] = (), max_bytes: int | None = None
    ) -> list[OutboxItem]:
        """Pending records whose next attempt is at or before `now`, oldest schedule first, skipping `exclude`.
        With `max_bytes`, only as many as fit in that many payload bytes (at least one): a backlog of large records
        is never loaded at once."""
        return await self._call(self._due, now, limit, tuple(exclude), max_bytes)

    async def next_attempt_at(self, exclude: Collection[str] = ()) -> float | None:
        """The earliest next_attempt_at of a pending record not in `exclude`, or None when there is none."""
        return await self._call(self._next_attempt_at, tuple(exclude))

    async def ack(self, run_id: str, version: int) -> bool:
        """Deletes the record if it is still `version`. False means a newer record was put meanwhile (keep it)."""
        return await self._call(self._ack, run_id, version)

    async def defer(self, run_id: str, version: int, next_at: float, error: str) -> bool:
        """Counts a failed attempt and schedules the next one, unless a newer record replaced `version`."""
        return await self._call(self._defer, run_id, version, next_at, error)

    async def make_due(self, now: float) -> int:
        """Brings every pending record scheduled after `now` forward to `now` (their attempt counts stay); how many.
        Used when RunsService answers again after an outage."""
        return await self._call(self._make_due, now)

    async def park(self, run_id: str, error: str, version: int | None = None) -> bool:
        """Moves a record RunsService rejected to the dead-letter state (kept, listed by `parked()`, never sent).

        With `version`, only that version is parked: a newer record put meanwhile stays pending.
        """
        return await self._call(self._park, run_id, error, version)

    async def parked(self) -> list[ParkedItem]:
        return await self._call(self._parked)

    async def requeue(self, run_id: str | None = None) -> int:
        """Makes parked records (one, or all with None) pending and due now, e.g. after fixing RunsService."""
        return await self._call(self._requeue, run_id)

    async def get(self, run_id: str) -> OutboxItem | None:
        """The run's record in either state (for inspection and tests)."""
        return await self._call(self._get, run_id)

    async def counts(self) -> OutboxCounts:
        return await self._call(self._counts)

    def counts_blocking(self, timeout_s: float = 1.0) -> OutboxCounts:
        """`counts()` for synchronous callers on any thread (metrics callbacks). Raises OutboxError when closed,
        TimeoutError after `timeout_s`."""
        if self._closed:
            raise OutboxError(f"outbox {self._path} is closed")
        try:
            return self._executor.submit(self._guarded, self._counts).result(timeout_s)
        except RuntimeError as exc:
            if "shutdown" in str(exc):
                raise OutboxError(f"outbox {self._path} is closed") from exc
            raise

    async def count_due(self, now: float) -> int:
        return await self._call(self._count_due, now)

    # --- live-run journal --------------------------------------------------------------------------------------

    async def mark_live(self, run_id: str, payload: bytes) -> None:
        """Journals a run as executing here, with its RUNNING snapshot (fsynced)."""
        if not run_id:
            raise ValueError("run_id must not be empty")
        await self._call(self._mark_live, run_id, payload)

    async def clear_live(self, run_id: str) -> bool:
        return await self._call(self._clear_live, run_id)

    async def live_runs(self) -> list[tuple[str, bytes]]:
        return await self._call(self._live_runs)

    # --- lifecycle ---------------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Closes the file after the calls already submitted have run. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._disconnect)
        finally:
            self._executor.shutdown(wait=False)

    # --- worker-thread side ------------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise OutboxError(f"outbox {self._path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._guarded, fn, *args)
        except RuntimeError as exc:
            if "shutdown" in str(exc):  # the executor was shut down by a concurrent close()
                raise OutboxError(f"outbox {self._path} is closed") from exc
            raise

    def _guarded(self, fn: Callable[..., _T], *args: object) -> _T:
        if self._conn is None:
            if self._open_error is not None:
                raise OutboxError(f"outbox {self._path} could not be opened: {self._open_error}") from (
                    self._open_error
                )
            raise OutboxError(f"outbox {self._path} is closed")
        return fn(*args)

    def _connect(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=True, timeout=5.0)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"could not switch {self._path} to WAL (journal_mode={mode})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.executescript(_SCHEMA)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
            if "traceparent" not in columns:  # a file from before trace propagation
                conn.execute("ALTER TABLE outbox ADD COLUMN traceparent TEXT NOT NULL DEFAULT ''")
            self._conn = conn
            self._sync = "FULL"
            counts = self._counts()
            log.info(
                "outbox opened",
                extra={"outbox": str(self._path), "pending": counts.pending, "parked": counts.parked},
            )
            if counts.parked:
                log.error(
                    "outbox holds parked records RunsService rejected; inspect with Outbox.parked()",
                    extra={"outbox": str(self._path), "parked": counts.parked},
                )
        except BaseException as exc:
            log.exception("cannot open the outbox", extra={"outbox": str(self._path)})
            self._open_error = exc

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            log.info("outbox closed", extra={"outbox": str(self._path)})

    def _db(self, sync: _Sync) -> sqlite3.Connection:
        conn = self._conn
        assert conn is not None  # checked by _guarded
        if self._sync != sync:
            conn.execute(f"PRAGMA synchronous={sync}")
            self._sync = sync
        return conn

    def _write(self, sync: _Sync, body: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._db(sync)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may leave it open (SQLITE_BUSY) or already rolled back
                conn.execute("ROLLBACK")
            raise
        return result

    @staticmethod
    def _next_version(conn: sqlite3.Connection) -> int:
        row = conn.execute("UPDATE outbox_meta SET value = value + 1 WHERE key = 'version' RETURNING value").fetchone()
        return int(row[0])

    def _put(
        self, run_id: str, payload: bytes, terminal: bool, mark_live: bool, replace_terminal: bool, traceparent: str
    ) -> PutResult:
        def body(conn: sqlite3.Connection) -> PutResult:
            row = conn.execute("SELECT is_terminal, state FROM outbox WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None and row[0] and not (terminal and replace_terminal):
                if terminal:
                    conn.execute("DELETE FROM live_runs WHERE run_id = ?", (run_id,))
                return PutResult.IGNORED
            now = time.time()
            version = self._next_version(conn)
            conn.execute(
                """
                INSERT INTO outbox (run_id, payload, is_terminal, state, attempts, next_attempt_at, last_error,
                                    version, created_at, updated_at, traceparent)
                VALUES (?, ?, ?, 'pending', 0, ?, NULL, ?, ?, ?, ?)
                ON CONFLICT (run_id) DO UPDATE SET
                    payload = excluded.payload, is_terminal = excluded.is_terminal, state = 'pending',
                    attempts = 0, next_attempt_at = excluded.next_attempt_at, last_error = NULL,
                    version = excluded.version, updated_at = excluded.updated_at, parked_at = NULL,
                    traceparent = excluded.traceparent
                """,
                (run_id, payload, int(terminal), now, version, now, now, traceparent),
            )
            if terminal:
                conn.execute("DELETE FROM live_runs WHERE run_id = ?", (run_id,))
            elif mark_live:
                conn.execute(
                    "INSERT OR REPLACE INTO live_runs (run_id, payload, updated_at) VALUES (?, ?, ?)",
                    (run_id, payload, now),
                )
            if row is None:
                return PutResult.CREATED
            if row[1] == "parked":
                log.warning(
                    "a newer record replaces a parked one",
                    extra={"run_id": run_id, "terminal": terminal, "outbox": str(self._path)},
                )
            return PutResult.REPLACED

        return self._write("FULL", body)

    @staticmethod
    def _exclusion(exclude: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
        if not exclude:
            return "", ()
        return f" AND run_id NOT IN ({','.join('?' * len(exclude))})", exclude

    def _due(self, now: float, limit: int, exclude: tuple[str, ...], max_bytes: int | None) -> list[OutboxItem]:
        clause, params = self._exclusion(exclude)
        conn = self._db("NORMAL")
        if max_bytes is None:
            rows = conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?{clause}"
                " ORDER BY next_attempt_at, run_id LIMIT ?",
                (now, *params, limit),
            ).fetchall()
            return [_item(r) for r in rows]
        # The payload sizes first (length() of a blob does not read it), then only the payloads that fit.
        chosen = conn.execute(
            "SELECT run_id FROM (SELECT run_id, next_attempt_at,"
            " sum(length(payload)) OVER (ORDER BY next_attempt_at, run_id) - length(payload) AS before"
            f" FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?{clause})"
            " WHERE before < ? ORDER BY next_attempt_at, run_id LIMIT ?",
            (now, *params, max(max_bytes, 1), limit),
        ).fetchall()
        if not chosen:
            return []
        ids = [row[0] for row in chosen]
        rows = conn.execute(
            f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE run_id IN ({','.join('?' * len(ids))})"
            " ORDER BY next_attempt_at, run_id",
            ids,
        ).fetchall()
        return [_item(r) for r in rows]

    def _next_attempt_at(self, exclude: tuple[str, ...]) -> float | None:
        clause, params = self._exclusion(exclude)
        row = (
            self._db("NORMAL")
            .execute(f"SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending'{clause}", params)
            .fetchone()
        )
        return None if row[0] is None else float(row[0])

    def _ack(self, run_id: str, version: int) -> bool:
        return self._write(
            "NORMAL",
            lambda c: c.execute("DELETE FROM outbox WHERE run_id = ? AND version = ?", (run_id, version)).rowcount == 1,
        )

    def _defer(self, run_id: str, version: int, next_at: float, error: str) -> bool:
        return self._write(
            "NORMAL",
            lambda c: (
                c.execute(
                    "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ?"
                    " WHERE run_id = ? AND version = ? AND state = 'pending'",
                    (next_at, error, time.time(), run_id, version),
                ).rowcount
                == 1
            ),
        )

    def _make_due(self, now: float) -> int:
        return int(
            self._write(
                "NORMAL",
                lambda c: (
                    c.execute(
                        "UPDATE outbox SET next_attempt_at = ? WHERE state = 'pending' AND next_attempt_at > ?",
                        (now, now),
                    ).rowcount
                ),
            )
        )

    def _park(self, run_id: str, error: str, version: int | None) -> bool:
        now = time.time()
        sql = (
            "UPDATE outbox SET state = 'parked', attempts = attempts + 1, last_error = ?, parked_at = ?,"
            " updated_at = ? WHERE run_id = ? AND state = 'pending'"
        )
        params: tuple[object, ...] = (error, now, now, run_id)
        if version is not None:
            sql += " AND version = ?"
            params = (*params, version)
        parked = self._write("NORMAL", lambda c: c.execute(sql, params).rowcount == 1)
        if parked:
            log.error(
                "record parked: RunsService rejected it and it will not be retried until requeued",
                extra={"run_id": run_id, "version": version, "error": error, "outbox": str(self._path)},
            )
        return parked

    def _parked(self) -> list[ParkedItem]:
        rows = (
            self._db("NORMAL")
            .execute(
                "SELECT run_id, payload, is_terminal, attempts, last_error, parked_at, version FROM outbox"
                " WHERE state = 'parked' ORDER BY parked_at"
            )
            .fetchall()
        )
        return [
            ParkedItem(
                run_id=r[0],
                payload=bytes(r[1]),
                terminal=bool(r[2]),
                attempts=int(r[3]),
                last_error=r[4],
                parked_at=float(r[5]),
                version=int(r[6]),
            )
            for r in rows
        ]

    def _requeue(self, run_id: str | None) -> int:
        now = time.time()
        sql = (
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, parked_at = NULL,"
            " updated_at = ? WHERE state = 'parked'"
        )
        params: tuple[object, ...] = (now, now)
        if run_id is not None:
            sql += " AND run_id = ?"
            params = (*params, run_id)
        count = self._write("NORMAL", lambda c: c.execute(sql, params).rowcount)
        log.info("parked records requeued", extra={"count": count, "run_id": run_id, "outbox": str(self._path)})
        return int(count)

    def _get(self, run_id: str) -> OutboxItem | None:
        row = self._db("NORMAL").execute(f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _item(row)

    def _counts(self) -> OutboxCounts:
        conn = self._db("NORMAL")
        by_state = dict(conn.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        live = conn.execute("SELECT count(*) FROM live_runs").fetchone()[0]
        return OutboxCounts(pending=int(by_state.get("pending", 0)), parked=int(by_state.get("parked", 0)), live=live)

    def _count_due(self, now: float) -> int:
        row = (
            self._db("NORMAL")
            .execute("SELECT count(*) FROM outbox WHERE state = 'pending' AND next_attempt_at <= ?", (now,))
            .fetchone()
        )
        return int(row[0])

    def _mark_live(self, run_id: str, payload: bytes) -> None:
        self._write(
            "FULL",
            lambda c: c.execute(
                "INSERT OR REPLACE INTO live_runs (run_id, payload, updated_at) VALUES (?, ?, ?)",
                (run_id, payload, time.time()),
            ),
        )

    def _clear_live(self, run_id: str) -> bool:
        return self._write(
            "NORMAL", lambda c: c.execute("DELETE FROM live_runs WHERE run_id = ?", (run_id,)).rowcount == 1
        )

    def _live_runs(self) -> list[tuple[str, bytes]]:
        rows = self._db("NORMAL").execute("SELECT run_id, payload FROM live_runs ORDER BY updated_at").fetchall()
        return [(str(r[0]), bytes(r[1])) for r in rows]


def _item(row: tuple[object, ...]) -> OutboxItem:
    run_id, payload, is_terminal, attempts, next_attempt_at, last_error, version, traceparent = row
    assert isinstance(payload, bytes)
    assert isinstance(attempts, int) and isinstance(version, int)
    assert isinstance(next_attempt_at, int | float)
    return OutboxItem(
        run_id=str(run_id),
        payload=payload,
        terminal=bool(is_terminal),
        attempts=attempts,
        next_attempt_at=float(next_attempt_at),
        last_error=None if last_error is None else str(last_error),
        version=version,
        traceparent=str(traceparent or ""),
    )
