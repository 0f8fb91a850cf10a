"""RunWriter.record_batch below the servicer: what happens when the database itself refuses one run of a batch."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from runs_service.queries import RecordOutcome
from runs_service.storage.repository import RunRepository
from runs_service.storage.rows import run_to_rows
from tests.runs_service.storage.helpers import row_counts
from tests.support.run_factory import make_run


async def test_a_run_the_database_refuses_is_rejected_alone(repo: RunRepository) -> None:
    if repo.engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores any NUMERIC: there is no value it refuses after validation")
    good, bad, other = (run_to_rows(make_run()) for _ in range(3))
    # Validation would refuse this cost; the writer is called directly to make PostgreSQL refuse it
    # (NUMERIC(20, 10) overflow), standing for any value validation might one day let through.
    bad = dataclasses.replace(bad, run={**bad.run, "cost": Decimal("123456789012345")})
    results = await repo.record_batch([good, bad, other])
    assert [r.outcome for r in results] == [RecordOutcome.CREATED, RecordOutcome.REJECTED, RecordOutcome.CREATED]
    rejection = results[1].rejection
    assert rejection is not None and rejection.reason == "STORAGE_REJECTED"
    assert "numeric field overflow" in rejection.message
    for rows in (good, other):
        assert await row_counts(repo, rows.run["id"]) == (1, len(rows.steps), len(rows.tool_calls))
    assert await row_counts(repo, bad.run["id"]) == (0, 0, 0)
