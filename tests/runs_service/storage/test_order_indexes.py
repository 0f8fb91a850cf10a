"""The runs list filtered by agent, status or user, ordered by tokens, duration or cost: one index range (0016).

Without these indexes the database either walks the order's index and discards every other agent's run, or reads
all the agent's runs and sorts them: 0.4-1.4 s at 1M runs (bench/web.py). The plans are checked on an empty table
with sequential scans and sorts discouraged, i.e. what the indexes allow, not what a planner picks for few rows.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from runs_service.queries import OrderField, Ordering
from runs_service.query.filter import FilterTables, compile_filter
from runs_service.storage.engine import sync_url
from runs_service.storage.ordering import order_clauses
from runs_service.storage.tables import runs, tool_calls

ORDER_INDEX_SUFFIX = {
    OrderField.TOTAL_TOKENS: "total_tokens_id",
    OrderField.DURATION: "duration_order",
    OrderField.COST: "cost_order",
}
# user_name: also what a caller who is not an admin gets on every query (their own runs only).
FILTERS = {"agent_name": 'agent_name = "agent-03"', "status": "status = TIMED_OUT", "user_name": 'user = "user-001"'}


def _plan(url: str, filter_text: str, ordering: Ordering) -> str:
    where = compile_filter(filter_text, FilterTables(runs, tool_calls))
    assert where is not None
    statement = sa.select(runs.c.id).where(where).order_by(*order_clauses(ordering)).limit(51)
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET enable_seqscan = off")
                connection.exec_driver_sql("SET enable_sort = off")
                return "\n".join(row[0] for row in connection.exec_driver_sql(f"EXPLAIN {compiled}"))
            return "\n".join(str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("field", list(ORDER_INDEX_SUFFIX))
@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("filtered", list(FILTERS))
def test_an_agent_status_or_user_filter_with_an_order_reads_one_index_range_without_sorting(
    migrated_db_url: str, filtered: str, field: OrderField, descending: bool
) -> None:
    plan = _plan(migrated_db_url, FILTERS[filtered], Ordering(field=field, descending=descending))
    assert f"ix_runs_{filtered}_{ORDER_INDEX_SUFFIX[field]}" in plan, plan
    if migrated_db_url.startswith("postgresql"):
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
    else:
        assert "TEMP B-TREE" not in plan, plan
