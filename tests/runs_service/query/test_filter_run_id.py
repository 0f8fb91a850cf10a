"""`id` filters: a whole run id, a prefix (`"0190b6e2*"`) or a suffix (`"*2e3f4a5b"`, as `agentrun runs list`
prints ids), on SQLite and PostgreSQL; a prefix is a range scan of the primary key and a suffix of 8+ characters uses
the index on the id's last 8 characters (checked with the query planner), so resolving a short id stays cheap at 1M
runs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from runs_service.errors import InvalidFilter
from runs_service.queries import ListRunsQuery, Scope
from runs_service.query.filter import FilterTables, compile_filter, normalise_filter
from runs_service.storage.engine import create_engine_for, sync_url
from runs_service.storage.repository import RunRepository
from runs_service.storage.tables import runs, tool_calls
from tests.support.run_factory import make_run

A = "0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f"
B = "0190b6e2-7c3a-7d4e-9f10-aaaa4c5d6e7f"  # same last 8 characters as A
C = "0190b6e3-0000-7000-8000-000000000001"
D = "0190b6e2-ffff-7fff-bfff-ffffffffffff"
E = "0190b6e2-0000-7000-8000-0000000000ff"
IDS = {A, B, C, D, E}
TABLES = FilterTables(runs, tool_calls)

MATCHES: list[tuple[str, set[str]]] = [
    (f'id = "{A}"', {A}),
    (f"id = {A}", {A}),
    (f'id != "{A}"', IDS - {A}),
    ('id = "0190b6e2*"', {A, B, D, E}),
    ("id = 0190b6e2*", {A, B, D, E}),
    ('id = "0190b6e2-*"', {A, B, D, E}),
    ('id = "0190b6e2-7c3a*"', {A, B}),
    ('id = "0190b6e*"', IDS),
    ('id = "0190b6e3*"', {C}),
    ('id = "0*"', IDS),
    ('id = "f*"', set()),
    (f'id = "{A}*"', {A}),
    ('id = "*4c5d6e7f"', {A, B}),
    ("id = *4c5d6e7f", {A, B}),
    ('id = "*2a3b4c5d6e7f"', {A}),
    ('id = "*-2a3b4c5d6e7f"', {A}),
    ('id = "*7f"', {A, B}),
    ('id = "*ff"', {D, E}),
    ('id = "*ffffffff"', {D}),
    (f'id = "*{C}"', {C}),
    ('NOT id = "0190b6e2*"', {C}),
    ('id = "*4c5d6e7f" AND id = "0190b6e2-7c3a-7d4e-9f10-2*"', {A}),
]

INVALID: list[tuple[str, str]] = [
    ('id = "0190B6E2*"', "lower-case hexadecimal digits"),
    ('id = "0190b6e2"', 'is not a whole run id (36 characters): write "0190b6e2*"'),
    ('id = "*ab*"', 'id expects a run id, a prefix such as "0190b6e2*" or a suffix such as "*2e3f4a5b"'),
    ('id = "*"', "id expects a run id"),
    ('id != "0190b6e2*"', "a * is only allowed with ="),
    ('id > "0190b6e2*"', "operator > is not allowed for id"),
    ('id = "0190b6e2x*"', "lower-case hexadecimal digits"),
    ('id = "0190b6e27*"', "hyphens where a UUID has them"),
    ('id = "*4c5d-6e7f"', "hyphens where a UUID has them"),
    (f'id = "{A}0"', "id expects a run id"),
]


@pytest.fixture
async def repository(migrated_db_url: str) -> AsyncIterator[RunRepository]:
    engine = create_engine_for(migrated_db_url)
    repository = RunRepository(engine, b"secret-0123456789abcdef")
    for run_id in sorted(IDS):
        await repository.record_run(make_run(run_id=run_id))
    yield repository
    # Before the test's loop closes: aiosqlite's threads of an engine left to the garbage collector later called a
    # closed loop (PytestUnhandledThreadExceptionWarning).
    await engine.dispose()


@pytest.mark.parametrize(("text", "expected"), MATCHES)
async def test_id_filters_select_the_runs(repository: RunRepository, text: str, expected: set[str]) -> None:
    page = await repository.list_runs(ListRunsQuery(filter=text, page_size=100), Scope.everything())
    assert {run.id for run in page.runs} == expected, text


def test_id_filters_render_canonically() -> None:
    assert normalise_filter("id = *4c5d6e7f") == 'id = "*4c5d6e7f"'
    assert normalise_filter("id=0190b6e2*") == 'id = "0190b6e2*"'
    assert normalise_filter(f"id={A}") == f'id = "{A}"'
    for text, _ in MATCHES:
        assert normalise_filter(normalise_filter(text)) == normalise_filter(text)


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_id_filters_say_what_an_id_filter_takes(text: str, message: str) -> None:
    with pytest.raises(InvalidFilter) as caught:
        compile_filter(text, TABLES)
    assert message in caught.value.message, caught.value.message


def _plan(url: str, text: str) -> str:
    where = compile_filter(text, TABLES)
    assert where is not None
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            statement = sa.select(runs.c.id, runs.c.agent_name).where(where)
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET enable_seqscan = off")  # few rows: show what the index allows
                return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
            return "\n".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    finally:
        engine.dispose()


def test_a_prefix_is_a_primary_key_range_and_a_suffix_uses_the_tail_index(migrated_db_url: str) -> None:
    postgres = migrated_db_url.startswith("postgresql")
    prefix_plan = _plan(migrated_db_url, 'id = "0190b6e2-7c*"')
    suffix_plan = _plan(migrated_db_url, 'id = "*4c5d6e7f"')
    if postgres:
        assert "pk_runs" in prefix_plan and "Seq Scan" not in prefix_plan, prefix_plan
        assert "ix_runs_id_tail" in suffix_plan and "Seq Scan" not in suffix_plan, suffix_plan
    else:
        assert "sqlite_autoindex_runs_1 (id>? AND id<?)" in prefix_plan or "PRIMARY KEY" in prefix_plan, prefix_plan
        assert "USING INDEX ix_runs_id_tail" in suffix_plan, suffix_plan
