"""Compiled filters run against the real RunsService tables on SQLite and PostgreSQL (seeded in filter_db.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runs_service.errors import InvalidFilter
from runs_service.query.filter import compile_filter, normalise_filter
from runs_service.storage.tables import runs
from tests.runs_service.query.filter_db import ALL_IDS, TABLES, select_ids

# (filter, ids of the runs it selects). The runs: r1 web-search, r2 web_search, r3 Web-crawler, r4 clock
# (RUNNING: no duration, no cost, no labels, empty model and user), r5 100%done, r6 o'brien "q".
VALID: list[tuple[str, set[str]]] = [
    ("", set(ALL_IDS)),
    ('agent_name = "web-search"', {"r1"}),
    ("agent_name = web-search", {"r1"}),
    ('agent_name != "web-search"', set(ALL_IDS - {"r1"})),
    ('agent_name = "WEB-SEARCH"', set()),
    ('agent_name = "web-*"', {"r1"}),
    ('agent_name = "web_*"', {"r2"}),
    ('agent_name = "web*"', {"r1", "r2"}),
    ('agent_name = "Web*"', {"r3"}),
    ('agent_name = "100%*"', {"r5"}),
    ('agent_name = "1%*"', set()),
    ('agent_name = "*"', set(ALL_IDS)),
    ('agent_name = "web\\*"', set()),
    ("agent_name = 'o\\'brien \"q\"'", {"r6"}),
    ('agent_name = "o\'brien \\"q\\""', {"r6"}),
    ('model_name = "gemini-2.5-flash"', {"r1", "r3", "r5"}),
    ('model_name = ""', {"r4"}),
    ('model_name = "gemini-2.5-*"', {"r1", "r2", "r3", "r5", "r6"}),
    ("user = alice", {"r1", "r5"}),
    ("user != alice", {"r2", "r3", "r4", "r6"}),
    ("status = COMPLETED", {"r1", "r2"}),
    ("status = RUN_STATUS_COMPLETED", {"r1", "r2"}),
    ('status = "RUN_STATUS_RUNNING"', {"r4"}),
    ("status != COMPLETED", {"r3", "r4", "r5", "r6"}),
    ('start_time < "2026-01-01T00:00:00Z"', {"r5"}),
    ('start_time = "2026-01-01T10:00:00Z"', {"r1"}),
    ('start_time = "2026-01-01T11:00:00+01:00"', {"r1"}),
    ('start_time != "2026-01-01T10:00:00Z"', set(ALL_IDS - {"r1"})),
    ('start_time >= "2026-01-02T10:00:00Z"', {"r3", "r4", "r6"}),
    ('start_time > "2026-01-02T10:00:00Z"', {"r4", "r6"}),
    ('start_time <= "2026-01-01T12:00:00.000000Z"', {"r1", "r2", "r5"}),
    ('start_time >= "2025-12-31T23:59:59.5Z" AND start_time < "2026-01-01T00:00:00Z"', {"r5"}),
    ("duration > 1s", {"r1", "r2", "r5"}),
    ("duration >= 1.5s", {"r1", "r2", "r5"}),
    ("duration < 250ms", {"r6"}),
    ("duration <= 250ms", {"r3", "r6"}),
    ("duration = 2m", {"r5"}),
    ('duration = "30"', {"r1"}),
    ("duration = 1ms", {"r6"}),
    ("duration != 30s", {"r2", "r3", "r4", "r5", "r6"}),
    ("total_tokens > 100", {"r1", "r2", "r5"}),
    ("total_tokens = 0", {"r4"}),
    ("total_tokens <= 70", {"r3", "r4", "r6"}),
    ("total_tokens >= 9223372036854775807", set()),
    ("total_tokens > -9223372036854775808", set(ALL_IDS)),
    ("cost > 0.25", {"r5"}),
    ("cost >= 0.25", {"r2", "r5"}),
    ("cost < 0.001", {"r3", "r6"}),
    ("cost = 0.0000000001", {"r6"}),
    ("cost = 0.0015", {"r1"}),
    ("cost != 0.0015", {"r2", "r3", "r4", "r5", "r6"}),
    ("cost > -1", {"r1", "r2", "r3", "r5", "r6"}),
    ("labels.env = prod", {"r1", "r5"}),
    ('labels.env = "prod*"', {"r1", "r5", "r6"}),
    ("labels.env != prod", {"r2", "r3", "r4", "r6"}),
    ('labels.env = "*"', {"r1", "r2", "r3", "r5", "r6"}),
    ('labels.env = "prod\'; --"', {"r6"}),
    ("labels.team = ops", {"r6"}),
    ("labels.team != ops", {"r1", "r2", "r3", "r4", "r5"}),
    ("labels.a.b-c_d = dotted", {"r3"}),
    ("labels.missing = x", set()),
    ("labels.missing != x", set(ALL_IDS)),
    ("tool = get_time", {"r1", "r3"}),
    ('tool = "get_time*"', {"r1", "r3", "r6"}),
    ("tool = nothing", set()),
    ("NOT tool = get_time", {"r2", "r4", "r5", "r6"}),
    ("tool = get_time AND tool = fetch", {"r3"}),
    ("tool = get_time OR tool = fetch", {"r1", "r3", "r5"}),
    ("user = alice OR user = bob AND status = FAILED", {"r1", "r3", "r5"}),
    ("(user = alice OR user = bob) AND status = FAILED", {"r3"}),
    ("NOT user = alice AND NOT user = bob", {"r4", "r6"}),
    ("NOT (user = alice OR user = bob)", {"r4", "r6"}),
    ("NOT NOT user = carol", {"r6"}),
    ("NOT duration > 1s", {"r3", "r4", "r6"}),
    ("NOT cost < 1", {"r4", "r5"}),
    ("NOT labels.env = prod", {"r2", "r3", "r4", "r6"}),
    ("NOT labels.env != prod", {"r1", "r5"}),
    (
        'status = COMPLETED AND start_time > "2026-01-01T00:00:00Z" AND model_name = "gemini-*" AND cost < 1',
        {"r1", "r2"},
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[case[0][:60] for case in VALID])
def test_filters_select_the_expected_runs(db: sa.Engine, text: str, expected: set[str]) -> None:
    assert select_ids(db, text) == expected
    # The canonical spelling selects the same runs, and NOT selects exactly the others.
    canonical = normalise_filter(text)
    assert select_ids(db, canonical) == expected
    if canonical:
        assert select_ids(db, f"NOT ({canonical})") == ALL_IDS - expected


INJECTIONS = [
    'agent_name = "x\' OR 1=1 --"',
    "agent_name = 'x\\' OR 1=1 --'",
    'agent_name = "x\\" OR 1=1 --"',
    'agent_name = "\'; DROP TABLE runs; --"',
    "labels.env = \"prod' OR '1'='1\"",
    'labels.env = "\') OR 1=1 --"',
    'tool = "x\') OR 1=1 --"',
    'user = "%"',
    'user = "_____"',
    'agent_name = "%*"',
    'agent_name = "_*"',
    'agent_name = "/*"',
    'labels.env = "$.env"',
]


@pytest.mark.parametrize("text", INJECTIONS)
def test_injection_attempts_are_plain_values_that_select_nothing(db: sa.Engine, text: str) -> None:
    assert select_ids(db, text) == set()
    with db.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(runs)) == len(ALL_IDS)


@pytest.mark.parametrize(
    "text",
    ['labels.env" = x', "labels.env' = x", "labels.$.env = x", "labels.a[0] = x", "agent_name = x OR 1=1", "1 = 1"],
)
def test_injection_through_field_names_is_rejected_before_sql(text: str) -> None:
    with pytest.raises(InvalidFilter):
        compile_filter(text, TABLES)


def test_values_are_bound_parameters_never_sql_text(db: sa.Engine) -> None:
    condition = compile_filter('agent_name = "x\' OR 1=1 --" AND labels.env = "prod\'"', TABLES)
    assert condition is not None
    sql = str(sa.select(runs.c.id).where(condition).compile(db))
    assert "1=1" not in sql
    assert "prod'" not in sql
