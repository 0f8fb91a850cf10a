"""RunRepository: everything RunsService stores and asks about runs, on SQLite or PostgreSQL (SQLAlchemy Core).

Every method maps connectivity failures to StorageUnavailable (runs_service.storage.errors). Visibility: a Scope
with a user sees only that user's runs; an invisible run behaves exactly like an unknown one.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, bindparam, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentrun_core.domain import ExecutionStep, Run, ToolCallRecord
from runs_service.errors import InvalidPageToken, RunNotFound
from runs_service.queries import (
    DEFAULT_STEP_PAGE_SIZE,
    MAX_DESCENDANTS,
    DeleteAnswer,
    DeleteRunsQuery,
    Descendants,
    ExportBatch,
    ExportQuery,
    ListRunsQuery,
    ListSessionsQuery,
    RecordResult,
    RunPage,
    RunStatsRow,
    Scope,
    SessionPage,
    StatsQuery,
    StepPage,
    ToolStatsRow,
    normalise_page_size,
)
from runs_service.retention import PurgePlan
from runs_service.storage import run_tree, sessions, stats
from runs_service.storage.deletion import Pause, Position, RunDeleter, after
from runs_service.storage.errors import storage_errors
from runs_service.storage.ordering import after_position, order_clauses, ordering_text, parse_order_by, position_of
from runs_service.storage.page_tokens import PageTokenCodec
from runs_service.storage.rows import RunRows, run_from_row, step_from_row, to_utc, tool_call_from_row
from runs_service.storage.run_writer import RunWriter
from runs_service.storage.tables import run_steps, runs, tool_calls

logger = logging.getLogger(__name__)

_RUNS_TOKEN_MATCHES = "filter, order_by or caller"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
# Runs per export batch (one database read each): BASIC rows are small; FULL runs carry their steps.
EXPORT_BASIC_BATCH = 500
EXPORT_FULL_BATCH = 20
_STEPS_TOKEN_MATCHES = "run or caller"
_SESSIONS_TOKEN_MATCHES = "filter, order_by or caller"


class RunRepository:
    def __init__(self, engine: AsyncEngine, page_token_secret: bytes) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._tokens = PageTokenCodec(page_token_secret)
        self._writer = RunWriter(engine)
        self._deleter = RunDeleter(engine)
        # SQLite reads see one snapshot per transaction anyway; PostgreSQL needs REPEATABLE READ for that.
        self._snapshot_engine = (
            engine.execution_options(isolation_level="REPEATABLE READ") if self._dialect == "postgresql" else engine
        )
        by_id = runs.c.id == bindparam("run_id")
        by_user = runs.c.user_name == bindparam("user")
        self._select_run = select(runs).where(by_id)
        self._select_run_scoped = select(runs).where(by_id, by_user)
        self._select_visible = select(runs.c.id).where(by_id)
        self._select_visible_scoped = select(runs.c.id).where(by_id, by_user)
        self._select_steps = (
            select(run_steps).where(run_steps.c.run_id == bindparam("run_id")).order_by(run_steps.c.sequence)
        )
        self._select_step_page = (
            select(run_steps)
            .where(run_steps.c.run_id == bindparam("run_id"), run_steps.c.sequence > bindparam("after"))
            .order_by(run_steps.c.sequence)
            .limit(bindparam("limit"))
        )
        self._select_tool_calls = (
            select(tool_calls).where(tool_calls.c.run_id == bindparam("run_id")).order_by(tool_calls.c.position)
        )
        # PostgreSQL: the run with its steps and tool calls in ONE statement (one round trip, one snapshot).
        steps_json, calls_json = _children_as_json()
        self._select_full = select(runs, steps_json, calls_json).where(by_id)
        self._select_full_scoped = select(runs, steps_json, calls_json).where(by_id, by_user)
        self._select_steps_of = (
            select(run_steps)
            .where(run_steps.c.run_id.in_(bindparam("run_ids", expanding=True)))
            .order_by(run_steps.c.run_id, run_steps.c.sequence)
        )
        self._select_tool_calls_of = (
            select(tool_calls)
            .where(tool_calls.c.run_id.in_(bindparam("run_ids", expanding=True)))
            .order_by(tool_calls.c.run_id, tool_calls.c.position)
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    # --- writes ------------------------------------------------------------------------------------------

    async def record_run(self, run: Run) -> RecordResult:
        """Idempotent upsert of a validated run (runs_service.validation.validate_run); see run_writer.py."""
        return await self._writer.record(run)

    async def record_rows(self, rows: RunRows) -> RecordResult:
        """Idempotent upsert of one run's validated rows (runs_service.validation.validate_rows)."""
        return await self._writer.record_rows(rows)

    async def record_batch(self, batch: Sequence[RunRows]) -> list[RecordResult]:
        """Idempotent upserts of several runs' validated rows; one result per run, in order (run_writer.py)."""
        return await self._writer.record_batch(batch)

    # --- single runs -------------------------------------------------------------------------------------

    async def get_run(self, run_id: str, *, full: bool, scope: Scope) -> Run | None:
        """The run, or None when it is unknown or not visible to `scope`. FULL adds steps and tool calls."""
        if full and self._dialect == "postgresql":
            return await self._get_full_run_pg(run_id, scope)
        async with storage_errors("get run", run_id=run_id), self._read_connection(consistent=full) as conn:
            if scope.user is None:
                row = (await conn.execute(self._select_run, {"run_id": run_id})).mappings().first()
            else:
                params = {"run_id": run_id, "user": scope.user}
                row = (await conn.execute(self._select_run_scoped, params)).mappings().first()
            if row is None:
                return None
            if not full:
                return run_from_row(row)
            step_rows = (await conn.execute(self._select_steps, {"run_id": run_id})).mappings().all()
            call_rows = (await conn.execute(self._select_tool_calls, {"run_id": run_id})).mappings().all()
            return run_from_row(row, [step_from_row(r) for r in step_rows], [tool_call_from_row(r) for r in call_rows])

    async def _get_full_run_pg(self, run_id: str, scope: Scope) -> Run | None:
        async with storage_errors("get run", run_id=run_id), self._engine.connect() as conn:
            if scope.user is None:
                result = await conn.execute(self._select_full, {"run_id": run_id})
            else:
                result = await conn.execute(self._select_full_scoped, {"run_id": run_id, "user": scope.user})
            row = result.mappings().first()
        if row is None:
            return None
        steps = [step_from_row(_timestamps_parsed(r, "time")) for r in row["steps_json"]]
        calls = [tool_call_from_row(_timestamps_parsed(r, "start_time")) for r in row["calls_json"]]
        return run_from_row(row, steps, calls)

    async def get_descendants(self, run: Run, scope: Scope, limit: int = MAX_DESCENDANTS) -> Descendants:
        """The runs under `run` visible to `scope` (BASIC views), at most `limit`, by start time then id."""
        async with storage_errors("get run descendants", run_id=run.id), self._engine.connect() as conn:
            return await run_tree.descendants(conn, run, scope, limit)

    async def list_steps(self, run_id: str, page_size: int, page_token: str, scope: Scope) -> StepPage:
        """One page of a run's steps by sequence; RunNotFound when the run is unknown or not visible."""
        size = normalise_page_size(page_size, DEFAULT_STEP_PAGE_SIZE)
        bound_to = ("steps", run_id, scope.user)
        after = 0
        if page_token:
            position = self._tokens.decode(page_token, bound_to, _STEPS_TOKEN_MATCHES)
            after = position.get("seq", -1)
            if not isinstance(after, int) or isinstance(after, bool) or after < 0:
                raise InvalidPageToken("is malformed; start again without it")
        async with storage_errors("list run steps", run_id=run_id), self._read_connection(consistent=False) as conn:
            if not await self._is_visible(conn, run_id, scope):
                raise RunNotFound(run_id)
            params = {"run_id": run_id, "after": after, "limit": size + 1}
            rows = (await conn.execute(self._select_step_page, params)).mappings().all()
        steps = [step_from_row(r) for r in rows[:size]]

        def token_after(index: int) -> str:
            return self._tokens.encode(bound_to, {"seq": steps[index].sequence})

        next_token = token_after(len(steps) - 1) if len(rows) > size else ""
        return StepPage(steps=steps, next_page_token=next_token, page_token_after=token_after)

    # --- lists and stats ---------------------------------------------------------------------------------

    async def list_runs(self, query: ListRunsQuery, scope: Scope) -> RunPage:
        """A page of runs matching `query.filter`, in `query.order_by` order, visible to `scope`."""
        ordering = parse_order_by(query.order_by)
        size = normalise_page_size(query.page_size)
        filter_text = query.filter.strip()
        bound_to = ("runs", _normalised_filter(filter_text), ordering_text(ordering), scope.user)
        conditions = self._run_conditions(filter_text, scope)
        if query.page_token:
            position = self._tokens.decode(query.page_token, bound_to, _RUNS_TOKEN_MATCHES)
            conditions.append(after_position(ordering, position))
        stmt = select(runs).where(*conditions).order_by(*order_clauses(ordering)).limit(size + 1)
        async with (
            storage_errors("list runs", filter=filter_text, order_by=query.order_by),
            self._read_connection(consistent=query.full) as conn,
        ):
            rows = (await conn.execute(stmt)).mappings().all()
            page_rows = rows[:size]
            if query.full and page_rows:
                found = await self._children_of(conn, [r["id"] for r in page_rows])
                page = [run_from_row(r, *found.get(r["id"], ((), ()))) for r in page_rows]
            else:
                page = [run_from_row(r) for r in page_rows]

        def token_after(index: int) -> str:
            return self._tokens.encode(bound_to, position_of(ordering, page_rows[index]))

        next_token = token_after(size - 1) if len(rows) > size else ""
        return RunPage(runs=page, next_page_token=next_token, page_token_after=token_after)

    async def export(self, query: ExportQuery, scope: Scope) -> AsyncIterator[ExportBatch]:
        """The runs matching `query.filter` that `scope` sees, in (start_time, id) order, batch by batch, from after
        `query.resume_cursor`. Each batch is one short read (no transaction or connection is held while the
        caller consumes a batch), so memory stays constant and a slow reader holds nothing in the database."""
        filter_text = query.filter.strip()
        bound_to = ("export", _normalised_filter(filter_text), scope.user)
        conditions = self._run_conditions(filter_text, scope)
        position = self._export_position(query.resume_cursor, bound_to) if query.resume_cursor else None
        batch_size = EXPORT_FULL_BATCH if query.full else EXPORT_BASIC_BATCH
        total: int | None = None
        if query.count_total:
            count = select(func.count()).select_from(runs).where(*conditions, *after(position))
            async with storage_errors("count runs to export", filter=filter_text), self._engine.connect() as conn:
                total = int((await conn.execute(count)).scalar_one())
        while True:
            stmt = (
                select(runs)
                .where(*conditions, *after(position))
                .order_by(runs.c.start_time, runs.c.id)
                .limit(batch_size)
            )
            async with (
                storage_errors("export runs", filter=filter_text),
                self._read_connection(consistent=query.full) as conn,
            ):
                rows = (await conn.execute(stmt)).mappings().all()
                if query.full and rows:
                    found = await self._children_of(conn, [r["id"] for r in rows])
                    batch = [run_from_row(r, *found.get(r["id"], ((), ()))) for r in rows]
                else:
                    batch = [run_from_row(r) for r in rows]
            if not batch:
                if total is not None:  # nothing matches: the count asked for still comes, in one empty message
                    yield ExportBatch(runs=[], cursor_after=lambda _: query.resume_cursor, total_count=total)
                return
            last = batch[-1]
            position = Position(last.start_time, last.id)
            yield ExportBatch(runs=batch, cursor_after=self._cursor_maker(batch, bound_to), total_count=total)
            total = None
            if len(rows) < batch_size:
                return

    def _cursor_maker(self, batch: list[Run], bound_to: tuple[str | None, ...]) -> Callable[[int], str]:
        def cursor_after(index: int) -> str:
            run = batch[index]
            return self._tokens.encode(bound_to, {"t": (run.start_time - _EPOCH) // _MICROSECOND, "id": run.id})

        return cursor_after

    def _export_position(self, cursor: str, bound_to: tuple[str | None, ...]) -> Position:
        position = self._tokens.decode(cursor, bound_to, "filter or caller", field="resume_cursor")
        micros, run_id = position.get("t"), position.get("id")
        if not isinstance(micros, int) or isinstance(micros, bool) or not isinstance(run_id, str):
            raise InvalidPageToken("is malformed; start the export again without it", field="resume_cursor")
        try:
            return Position(_EPOCH + micros * _MICROSECOND, run_id)
        except OverflowError:
            raise InvalidPageToken("is malformed; start the export again without it", field="resume_cursor") from None

    async def list_sessions(self, query: ListSessionsQuery, scope: Scope) -> SessionPage:
        """A page of sessions visible to `scope` with a run matching `query.filter`, in `query.order_by` order."""
        ordering = sessions.parse_session_order_by(query.order_by)
        size = normalise_page_size(query.page_size)
        filter_text = query.filter.strip()
        bound_to = (
            "sessions",
            _normalised_filter(filter_text),
            sessions.session_ordering_text(ordering),
            scope.user,
        )
        conditions: list[ColumnElement[bool]] = []
        if scope.user is not None:
            conditions.append(sessions.sessions.c.user_name == scope.user)
        run_filter = _compiled_filter(filter_text)
        if run_filter is not None:
            conditions.append(sessions.has_matching_run(run_filter))
        if query.page_token:
            position = self._tokens.decode(query.page_token, bound_to, _SESSIONS_TOKEN_MATCHES)
            conditions.append(sessions.after_position(ordering, position))
        async with (
            storage_errors("list sessions", filter=filter_text, order_by=query.order_by),
            self._read_connection(consistent=True) as conn,
        ):
            rows = await sessions.page_rows(conn, conditions, ordering, size + 1)
            page = rows[:size]
            found = await sessions.summaries(conn, [(row["session_id"], row["user_name"]) for row in page])
        next_token = ""
        if len(rows) > size:
            next_token = self._tokens.encode(bound_to, sessions.position_of(ordering, page[-1]))
        return SessionPage(sessions=found, next_page_token=next_token)

    async def run_stats(self, query: StatsQuery, scope: Scope) -> list[RunStatsRow]:
        """Aggregates over runs that started in [query.start_time, query.end_time), grouped by query.group_by."""
        stats.check_range(query.start_time, query.end_time)
        conditions = self._run_conditions(query.filter.strip(), scope)
        conditions += self._time_range(query.start_time, query.end_time)
        async with (
            storage_errors("run stats", group_by=query.group_by.value, filter=query.filter),
            self._read_connection(consistent=True) as conn,
        ):
            return await stats.run_stats(conn, query.group_by, conditions)

    async def tool_stats(self, start: datetime, end: datetime, filter_text: str, scope: Scope) -> list[ToolStatsRow]:
        """Per (tool, server) aggregates over tool calls of runs that started in [start, end)."""
        stats.check_range(start, end)
        conditions = self._run_conditions(filter_text.strip(), scope) + self._time_range(start, end)
        async with (
            storage_errors("tool stats", filter=filter_text),
            self._read_connection(consistent=True) as conn,
        ):
            return await stats.tool_stats(conn, conditions)

    # --- deletion ----------------------------------------------------------------------------------------

    async def delete_runs(self, query: DeleteRunsQuery, scope: Scope) -> DeleteAnswer:
        """Deletes (or with dry_run counts) the runs matching the filter that `scope` may see, with their steps and
        tool calls, in batches (runs_service.storage.deletion); unfinished ones only with include_unfinished."""
        filter_text = query.checked_filter()
        conditions = self._run_conditions(filter_text, scope)
        unfinished = query.include_unfinished
        if query.dry_run:
            count, sample = await self._deleter.count(conditions, include_unfinished=unfinished)
            kept = 0 if unfinished else await self._deleter.count_unfinished(conditions)
            return DeleteAnswer(run_count=count, sample_run_ids=sample, unfinished_count=kept)
        deleted = await self._deleter.delete(conditions, pause=_yield, include_unfinished=unfinished)
        kept = 0 if unfinished else await self._deleter.count_unfinished(conditions)
        return DeleteAnswer(run_count=deleted, unfinished_count=kept)

    def expired_conditions(self, plan: PurgePlan) -> list[ColumnElement[bool]]:
        """The runs a retention plan has expired (runs_service.retention); InvalidFilter for a bad rule."""
        conditions = self._run_conditions(plan.filter, Scope.everything())
        return [*conditions, runs.c.start_time < to_utc(plan.cutoff)]

    async def purge_expired(self, plan: PurgePlan, *, batch_size: int, pause: Pause) -> int:
        """Deletes the runs `plan` has expired, batch by batch, pausing between batches; returns how many."""
        what = f"retention purge ({plan.description})"
        return await self._deleter.delete(self.expired_conditions(plan), batch_size=batch_size, pause=pause, what=what)

    @asynccontextmanager
    async def exclusive(self, key: int) -> AsyncIterator[bool]:
        """PostgreSQL: holds the session advisory lock `key` for the block if no other session holds it (yields
        whether it got it). SQLite: one process owns the file, so always True."""
        if self._dialect != "postgresql":
            yield True
            return
        async with storage_errors("advisory lock"):
            conn = await self._engine.connect()
        try:
            async with storage_errors("advisory lock"):
                acquired = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar())
                await conn.commit()
            try:
                yield acquired
            finally:
                if acquired:
                    try:
                        await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                        await conn.commit()
                    except Exception as exc:  # close the session for real: the lock goes with it
                        logger.warning("could not release advisory lock %d: %s", key, exc)
                        await conn.invalidate()
        finally:
            await conn.close()

    async def ping(self) -> None:
        """Raises StorageUnavailable when the database cannot be reached."""
        async with storage_errors("ping"), self._engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    # --- helpers -----------------------------------------------------------------------------------------

    def _read_connection(self, *, consistent: bool) -> AsyncConnection:
        """A connection for reads; `consistent` gives one snapshot across several statements on PostgreSQL."""
        if consistent:
            return self._snapshot_engine.connect()
        return self._engine.connect()

    async def _is_visible(self, conn: AsyncConnection, run_id: str, scope: Scope) -> bool:
        if scope.user is None:
            result = await conn.execute(self._select_visible, {"run_id": run_id})
        else:
            result = await conn.execute(self._select_visible_scoped, {"run_id": run_id, "user": scope.user})
        return result.first() is not None

    def _run_conditions(self, filter_text: str, scope: Scope) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = []
        if scope.user is not None:
            conditions.append(runs.c.user_name == scope.user)
        compiled = _compiled_filter(filter_text)
        if compiled is not None:
            conditions.append(compiled)
        return conditions

    @staticmethod
    def _time_range(start: datetime, end: datetime) -> list[ColumnElement[bool]]:
        return [runs.c.start_time >= to_utc(start), runs.c.start_time < to_utc(end)]

    async def _children_of(
        self, conn: AsyncConnection, run_ids: Sequence[str]
    ) -> dict[str, tuple[list[ExecutionStep], list[ToolCallRecord]]]:
        found: dict[str, tuple[list[ExecutionStep], list[ToolCallRecord]]] = defaultdict(lambda: ([], []))
        params = {"run_ids": list(run_ids)}
        for row in (await conn.execute(self._select_steps_of, params)).mappings():
            found[row["run_id"]][0].append(step_from_row(row))
        for row in (await conn.execute(self._select_tool_calls_of, params)).mappings():
            found[row["run_id"]][1].append(tool_call_from_row(row))
        return found


async def _yield(_elapsed_s: float, _deleted: int, _last: bool) -> None:
    """Between DeleteRuns batches: let other calls run (no sleep: the caller is waiting for the answer)."""
    await asyncio.sleep(0)


def _compiled_filter(filter_text: str) -> ColumnElement[bool] | None:
    """The WHERE clause over `runs` of a ListRuns filter; None for an empty one. Raises InvalidFilter."""
    if not filter_text:
        return None
    from runs_service.query.filter import FilterTables, compile_filter

    return compile_filter(filter_text, FilterTables(runs=runs, tool_calls=tool_calls))


def _normalised_filter(filter_text: str) -> str:
    """The canonical filter text page tokens are bound to (spacing and quoting differences do not matter)."""
    if not filter_text:
        return ""
    from runs_service.query.filter import normalise_filter

    return normalise_filter(filter_text)


def _children_as_json() -> tuple[Any, Any]:
    """Correlated subqueries giving a run's steps (by sequence) and tool calls (by position) as JSON arrays."""
    step = run_steps.alias("step")
    call = tool_calls.alias("call")
    steps = (
        select(func.coalesce(func.json_agg(aggregate_order_by(step.table_valued(), step.c.sequence)), _EMPTY_JSON))
        .where(step.c.run_id == runs.c.id)
        .scalar_subquery()
        .label("steps_json")
    )
    calls = (
        select(func.coalesce(func.json_agg(aggregate_order_by(call.table_valued(), call.c.position)), _EMPTY_JSON))
        .where(call.c.run_id == runs.c.id)
        .scalar_subquery()
        .label("calls_json")
    )
    return steps, calls


_EMPTY_JSON: ColumnElement[Any] = literal_column("'[]'::json")


def _timestamps_parsed(row: dict[str, Any], key: str) -> dict[str, Any]:
    """A child row decoded from JSON: its timestamp is ISO 8601 text there."""
    row[key] = datetime.fromisoformat(row[key])
    return row
