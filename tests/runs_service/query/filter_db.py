"""Real databases for the filter tests: the RunsService tables on SQLite and (when reachable) PostgreSQL, seeded
with a handful of runs chosen to exercise each field, NULLs, LIKE metacharacters, quotes and case."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from runs_service.query.filter import FilterTables, compile_filter
from runs_service.storage.tables import metadata, runs, tool_calls

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TABLES = FilterTables(runs=runs, tool_calls=tool_calls)


def _at(day: int, hour: int = 10, second: float = 0) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC) + timedelta(seconds=second)


# id -> (agent, model, user, status, start, duration_us, total_tokens, cost, labels, tools called)
RUNS: dict[str, tuple[Any, ...]] = {
    "r1": (
        "web-search",
        "gemini-2.5-flash",
        "alice",
        "COMPLETED",
        _at(1),
        30_000_000,
        1000,
        Decimal("0.0015"),
        {"env": "prod", "team": "search"},
        ["get_time"],
    ),
    "r2": (
        "web_search",
        "gemini-2.5-pro",
        "bob",
        "COMPLETED",
        _at(1, 12),
        1_500_000,
        200,
        Decimal("0.25"),
        {"env": "dev"},
        [],
    ),
    "r3": (
        "Web-crawler",
        "gemini-2.5-flash",
        "bob",
        "FAILED",
        _at(2),
        250_000,
        50,
        Decimal("0.0001"),
        {"env": "dev", "a.b-c_d": "dotted"},
        ["fetch", "get_time"],
    ),
    "r4": ("clock", "", "", "RUNNING", _at(3), None, 0, None, {}, []),
    "r5": (
        "100%done",
        "gemini-2.5-flash",
        "alice",
        "CANCELLED",
        _at(1, 0, -0.5),
        120_000_000,
        5000,
        Decimal("1.25"),
        {"env": "prod"},
        ["fetch"],
    ),
    "r6": (
        'o\'brien "q"',
        "gemini-2.5-pro",
        "carol",
        "TIMED_OUT",
        _at(4),
        1_000,
        70,
        Decimal("0.0000000001"),
        {"env": "prod'; --", "team": "ops"},
        ["get_time_zone"],
    ),
}
ALL_IDS = frozenset(RUNS)


def _run_row(run_id: str, values: tuple[Any, ...]) -> dict[str, Any]:
    agent, model, user, status, start, duration_us, tokens, cost, labels, _ = values
    now = datetime(2026, 2, 1, tzinfo=UTC)
    return {
        "id": run_id,
        "agent_name": agent,
        "agent_version": "",
        "user_name": user,
        "task": "",
        "labels": labels,
        "variables": {},
        "status": status,
        "final_response": "",
        "model_name": model,
        "start_time": start,
        "end_time": None,
        "duration_us": duration_us,
        "input_tokens": 0,
        "output_tokens": 0,
        "total_tokens": tokens,
        "cached_tokens": 0,
        "thinking_tokens": 0,
        "tool_use_prompt_tokens": 0,
        "cost": cost,
        "steps_taken": 0,
        "tools_used": [],
        "trace_id": "",
        "record_hash": "0" * 64,
        "recorded_at": now,
        "updated_at": now,
    }


def seed(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        metadata.create_all(conn, tables=[runs, tool_calls])
        conn.execute(runs.insert(), [_run_row(run_id, values) for run_id, values in RUNS.items()])
        calls = [
            {"run_id": run_id, "call_id": f"c{n}", "name": name, "status": "SUCCEEDED", "start_time": values[4]}
            for run_id, values in RUNS.items()
            for n, name in enumerate(values[9])
        ]
        conn.execute(tool_calls.insert(), calls)


def sqlite_engine(directory: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{directory / 'filters.db'}")
    seed(engine)
    yield engine
    engine.dispose()


def postgres_engine() -> Iterator[sa.Engine]:
    """The seeded tables in a throwaway schema of the shared test database; skips when PostgreSQL is unreachable."""
    import pytest

    base = sa.create_engine(POSTGRES_URL, connect_args={"connect_timeout": 2})
    try:
        with base.connect():
            pass
    except sa.exc.OperationalError as error:
        base.dispose()
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {str(error).splitlines()[0]}")
    schema = f"filter_test_{uuid.uuid4().hex[:12]}"
    with base.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema))
    engine = base.execution_options(schema_translate_map={None: schema})
    try:
        seed(engine)
        yield engine
    finally:
        with base.begin() as conn:
            conn.execute(sa.schema.DropSchema(schema, cascade=True))
        base.dispose()


def select_ids(engine: sa.Engine, text: str) -> frozenset[str]:
    """The ids of the runs `text` selects (every run for an empty filter)."""
    statement = sa.select(runs.c.id)
    condition = compile_filter(text, TABLES)
    if condition is not None:
        statement = statement.where(condition)
    with engine.connect() as conn:
        return frozenset(conn.scalars(statement))
