"""The runs under a run (sub-agent trees): GetRun include_descendants.

A top-level run's descendants are exactly the runs naming it as their root (one range of ix_runs_root_run_id_
start_time_id, already in start-time order). A child run's are found by following parent_run_id down from it (a
recursive query over ix_runs_parent_run_id_start_time; UNION, so even records naming each other in a cycle end).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agentrun_core.domain import Run
from runs_service.queries import MAX_DESCENDANTS, Descendants, Scope
from runs_service.storage.rows import run_from_row
from runs_service.storage.tables import runs


def _descendant_ids(run: Run) -> Any:
    """A subquery of the ids of every run under `run`."""
    tree = select(runs.c.id).where(runs.c.parent_run_id == run.id).cte("tree", recursive=True)
    child = runs.alias("child")
    tree = tree.union(select(child.c.id).where(child.c.parent_run_id == tree.c.id))
    return select(tree.c.id)


def descendants_statement(run: Run, scope: Scope, limit: int = MAX_DESCENDANTS) -> Select[Any]:
    """The first `limit` + 1 runs under `run` visible to `scope`, by start time then id (one more than the limit
    tells whether there are more)."""
    conditions: list[ColumnElement[bool]] = []
    if run.root_run_id:
        conditions.append(runs.c.id.in_(_descendant_ids(run)))
    else:
        conditions.append(runs.c.root_run_id == run.id)
    if scope.user is not None:
        conditions.append(runs.c.user_name == scope.user)
    return select(runs).where(*conditions).order_by(runs.c.start_time, runs.c.id).limit(limit + 1)


async def descendants(conn: AsyncConnection, run: Run, scope: Scope, limit: int = MAX_DESCENDANTS) -> Descendants:
    rows = (await conn.execute(descendants_statement(run, scope, limit))).mappings().all()
    return Descendants(runs=[run_from_row(row) for row in rows[:limit]], truncated=len(rows) > limit)
