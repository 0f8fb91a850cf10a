"""The `sessions` table ListSessions pages by is kept in step with `runs` by the database, whatever writes runs."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import sqlalchemy as sa

from agentrun_core.domain import RunStatus
from runs_service.queries import ListRunsQuery, ListSessionsQuery, Scope
from runs_service.storage import migrate
from runs_service.storage.engine import create_engine_for, sync_url
from runs_service.storage.repository import RunRepository
from runs_service.storage.rows import run_to_rows, to_utc
from runs_service.storage.tables import runs, sessions
from tests.support.composition import top_level
from tests.support.run_factory import make_run

SECRET = b"test-page-token-secret-0123456789"


async def _session_rows(repo: RunRepository) -> dict[tuple[str, str], tuple[object, object]]:
    async with repo.engine.connect() as conn:
        rows = (await conn.execute(sa.select(sessions))).all()
    return {(r.session_id, r.user_name): (to_utc(r.start_time), to_utc(r.last_run_start_time)) for r in rows}


async def test_inserts_updates_and_deletes_keep_sessions_in_step(repo: RunRepository) -> None:
    first = top_level(session_id="chat-1")
    second = top_level(session_id="chat-1", base=first, start_offset_s=60)
    third = top_level(session_id="chat-1", base=first, start_offset_s=120, status=RunStatus.RUNNING)
    for run in (second, third, first):  # any order
        await repo.record_run(run)
    assert await _session_rows(repo) == {("chat-1", "alice"): (first.start_time, third.start_time)}

    # The running run's terminal record (an UPDATE of the run row) that moves it to another session.
    moved = dataclasses.replace(
        make_run(run_id=third.id, start_time=third.start_time, model_calls=2, tool_calls=1), session_id="chat-2"
    )
    await repo.record_run(moved)
    assert await _session_rows(repo) == {
        ("chat-1", "alice"): (first.start_time, second.start_time),
        ("chat-2", "alice"): (third.start_time, third.start_time),
    }

    # Deletes (retention, an operator's SQL): bounds are recomputed, and a session goes with its last run.
    async with repo.engine.begin() as conn:
        await conn.execute(sa.delete(runs).where(runs.c.id.in_([first.id, third.id])))
    assert await _session_rows(repo) == {("chat-1", "alice"): (second.start_time, second.start_time)}
    page = await repo.list_sessions(ListSessionsQuery(), Scope.everything())
    assert [(s.session_id, s.run_count) for s in page.sessions] == [("chat-1", 1)]
    await repo.record_run(first)
    async with repo.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("TRUNCATE runs CASCADE"))
        else:
            await conn.execute(sa.delete(runs))
    assert await _session_rows(repo) == {}
    assert (await repo.list_sessions(ListSessionsQuery(), Scope.everything())).sessions == []


async def test_runs_outside_sessions_write_no_session_rows(repo: RunRepository) -> None:
    await repo.record_run(make_run())
    assert await _session_rows(repo) == {}


async def test_a_database_with_runs_migrates_to_composition_and_back(db_url: str) -> None:
    """Runs stored before migration 0005 read back as top-level runs outside any session, and survive a downgrade."""
    migrate.upgrade(db_url, "0001")
    old = make_run()
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            columns = {c.name for c in runs.columns} - {
                "parent_run_id",
                "root_run_id",
                "parent_tool_call_id",
                "depth",
                "session_id",
                "forked_from_run_id",
                "forked_from_sequence",
                "totals_with_descendants",
                "max_context_window_used",  # migration 0007
                "tool_call_count",  # migration 0008
                "queue_duration_us",  # migration 0015
            }
            row = {k: v for k, v in run_to_rows(old).run.items() if k in columns}
            now = old.start_time + timedelta(seconds=1)
            table = sa.table("runs", *(sa.column(c.name, c.type) for c in runs.columns if c.name in columns))
            conn.execute(sa.insert(table).values(**row, recorded_at=now, updated_at=now))
    finally:
        engine.dispose()

    migrate.upgrade(db_url, "head")
    repository = RunRepository(create_engine_for(db_url), SECRET)
    try:
        stored = await repository.get_run(old.id, full=False, scope=Scope.everything())
        assert stored is not None
        assert (stored.parent_run_id, stored.root_run_id, stored.depth, stored.session_id) == ("", "", 0, "")
        assert stored.forked_from is None and stored.token_usage_with_descendants is None
        top = await repository.list_runs(ListRunsQuery(filter='parent_run_id = "" AND depth = 0'), Scope.everything())
        assert [r.id for r in top.runs] == [old.id]
    finally:
        await repository.engine.dispose()
    migrate.downgrade(db_url, "0001")
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT id FROM runs")).scalars().all() == [old.id]
    finally:
        engine.dispose()


async def test_concurrent_runs_of_a_new_session_make_one_row_with_its_bounds(repo: RunRepository) -> None:
    base = top_level(session_id="chat-9")
    runs_of_session = [base] + [
        top_level(session_id="chat-9", base=base, start_offset_s=i, model_calls=1, tool_calls=0) for i in range(1, 20)
    ]
    await asyncio.gather(*(repo.record_run(run) for run in reversed(runs_of_session)))
    assert await _session_rows(repo) == {("chat-9", "alice"): (base.start_time, runs_of_session[-1].start_time)}
    page = await repo.list_sessions(ListSessionsQuery(), Scope(user="alice"))
    assert [(s.session_id, s.run_count, s.top_level_run_count) for s in page.sessions] == [("chat-9", 20, 20)]
    assert (await repo.list_sessions(ListSessionsQuery(), Scope(user="bob"))).sessions == []
