"""Small helpers for the storage tests (direct row counts)."""

from __future__ import annotations

import sqlalchemy as sa

from runs_service.storage.repository import RunRepository
from runs_service.storage.tables import run_steps, runs, tool_calls


async def row_counts(repo: RunRepository, run_id: str) -> tuple[int, int, int]:
    """(runs, run_steps, tool_calls) rows stored for `run_id`."""
    async with repo.engine.connect() as conn:
        counts = []
        for table in (runs, run_steps, tool_calls):
            column = table.c.id if table is runs else table.c.run_id
            stmt = sa.select(sa.func.count()).select_from(table).where(column == run_id)
            counts.append(int((await conn.execute(stmt)).scalar_one()))
    return counts[0], counts[1], counts[2]


async def distinct_steps(repo: RunRepository, run_id: str) -> int:
    async with repo.engine.connect() as conn:
        stmt = sa.select(sa.func.count(sa.distinct(run_steps.c.sequence))).where(run_steps.c.run_id == run_id)
        return int((await conn.execute(stmt)).scalar_one())
