from __future__ import annotations

import pytest
import sqlalchemy as sa

from runs_service.errors import SchemaOutdated
from runs_service.storage import migrate
from runs_service.storage.engine import sync_url

TABLES = {"runs", "run_steps", "tool_calls", "sessions"}
SESSION_TRIGGERS = {"runs_sessions_insert", "runs_sessions_update", "runs_sessions_delete"}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        return {ix["name"] for ix in sa.inspect(engine).get_indexes(table) if ix["name"]}
    finally:
        engine.dispose()


def _has_index(url: str, name: str) -> bool:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                found = conn.execute(sa.text("SELECT 1 FROM pg_indexes WHERE indexname = :n"), {"n": name})
            else:
                found = conn.execute(
                    sa.text("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = :n"), {"n": name}
                )
            return found.first() is not None
    finally:
        engine.dispose()


def _triggers(url: str) -> set[str]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                rows = conn.execute(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"))
            else:
                rows = conn.execute(sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'"))
            return {row[0] for row in rows}
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(db_url: str) -> None:
    assert migrate.current_revision(db_url) is None
    with pytest.raises(SchemaOutdated, match="agentrun-runs-service migrate"):
        migrate.check_schema(db_url)

    migrate.upgrade(db_url, "head")
    assert migrate.current_revision(db_url) == migrate.head_revision()
    assert _tables(db_url) >= TABLES
    assert "ix_runs_agent_name_start_time_id" in _indexes(db_url, "runs")
    assert _has_index(db_url, "ix_runs_id_tail")  # an expression index: SQLAlchemy does not reflect it on SQLite
    assert "ix_runs_session_id_user_name_start_time" in _indexes(db_url, "runs")
    for filtered in ("agent_name", "status", "user_name"):  # expression indexes among them: _has_index
        for order in ("total_tokens_id", "duration_order", "cost_order"):
            assert _has_index(db_url, f"ix_runs_{filtered}_{order}"), (filtered, order)
    postgres = db_url.startswith("postgresql")
    assert _triggers(db_url) == SESSION_TRIGGERS | ({"runs_sessions_truncate"} if postgres else set())
    assert "ix_tool_calls_name_run_id" in _indexes(db_url, "tool_calls")
    migrate.check_schema(db_url)

    migrate.downgrade(db_url, "base")
    assert migrate.current_revision(db_url) is None
    assert not TABLES & _tables(db_url)
    assert not _triggers(db_url)

    migrate.upgrade(db_url, "head")
    assert _tables(db_url) >= TABLES
    migrate.check_schema(db_url)


def test_migration_matches_table_definitions(migrated_db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from runs_service.storage.tables import metadata

    engine = sa.create_engine(sync_url(migrated_db_url))
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_schema_outdated_message_names_the_command(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with pytest.raises(SchemaOutdated) as info:
        migrate.check_schema(url)
    assert "agentrun-runs-service migrate" in info.value.message
    assert "upgrade head" in info.value.message
    assert "has no schema yet" in info.value.message


async def test_async_variants(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'a.db'}"
    await migrate.upgrade_async(url)
    assert await migrate.current_revision_async(url) == migrate.head_revision()
    await migrate.check_schema_async(url)
    await migrate.downgrade_async(url)
    assert await migrate.current_revision_async(url) is None


async def test_tool_call_count_is_backfilled_from_the_stored_tool_calls(db_url: str) -> None:
    """Runs stored before migration 0008 get their number of tool calls, which the BASIC view then carries."""
    from runs_service.queries import ListRunsQuery, Scope
    from runs_service.storage.engine import create_engine_for
    from runs_service.storage.repository import RunRepository
    from runs_service.storage.rows import run_to_rows
    from runs_service.storage.tables import runs, tool_calls
    from tests.support.run_factory import make_run

    migrate.upgrade(db_url, "0007")
    with_calls, without = make_run(model_calls=3, tool_calls=4), make_run(model_calls=1, tool_calls=0)
    engine = sa.create_engine(sync_url(db_url))
    try:
        with engine.begin() as conn:
            old_columns = [c for c in runs.columns if c.name not in ("tool_call_count", "queue_duration_us")]
            old_runs = sa.table("runs", *(sa.column(c.name, c.type) for c in old_columns))
            for run in (with_calls, without):
                rows = run_to_rows(run)
                now = run.start_time
                values = {c.name: rows.run[c.name] for c in old_columns if c.name in rows.run}
                conn.execute(sa.insert(old_runs).values(**values, recorded_at=now, updated_at=now))
                if rows.tool_calls:
                    conn.execute(sa.insert(tool_calls), rows.tool_calls)
    finally:
        engine.dispose()
    assert len(with_calls.tool_calls) == 4

    migrate.upgrade(db_url, "head")
    repository = RunRepository(create_engine_for(db_url), b"test-page-token-secret-0123456789")
    try:
        page = await repository.list_runs(ListRunsQuery(), Scope.everything())
        counts = {run.id: (run.tool_call_count, len(run.tool_calls)) for run in page.runs}
        assert counts == {with_calls.id: (4, 0), without.id: (0, 0)}
    finally:
        await repository.engine.dispose()
