"""Indexes for the runs list filtered by agent, status or user and ordered by tokens, cost or duration.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

An agent filter with a non-default order ("agent-03, most tokens first") had only two plans: walk the order's index
(0008) backwards and discard the other agents' runs, or read every run of the agent and sort. Both read 100k+ rows at
1M runs (0.4-1.4 s p95, bench/web.py). An index on (agent_name, <sort key>, id) serves the filter and the order
together: the scan stops after a page. The sort keys are runs_service.storage.ordering.sort_key's expressions,
character for character (as in 0008), or the database cannot use the indexes for the order.

The same for status: it has few values, but the rare ones have the same problem ("TIMED_OUT, most expensive first"
walked the cost index past 82k other runs: 285 ms). Measured with EXPLAIN ANALYZE at 1M runs (bench/web.py's
seeding): 0.05-0.12 ms for each of these orders with an agent or a status filter, from 90-800 ms.

And for user_name: a signed-in user who is not an admin only sees their own runs (a user_name condition on every
query), so "my runs, most tokens first" walked the tokens index past 745k other users' runs: 2.8 s at 1M runs with
100 users, 0.12 ms with (user_name, total_tokens, id).

No existing index becomes redundant: (agent_name, start_time desc, id) and (status, start_time) serve the default
order, and the single-column ix_runs_duration_us and ix_runs_cost serve range filters (duration > 100s, cost > 0.5),
which compare the plain columns, not the sort keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_agent_name_total_tokens_id", "runs", ["agent_name", "total_tokens", "id"])
    op.create_index(
        "ix_runs_agent_name_duration_order", "runs", ["agent_name", sa.text("coalesce(duration_us, -1)"), "id"]
    )
    op.create_index("ix_runs_agent_name_cost_order", "runs", ["agent_name", sa.text("coalesce(cost, -1)"), "id"])
    op.create_index("ix_runs_status_total_tokens_id", "runs", ["status", "total_tokens", "id"])
    op.create_index("ix_runs_status_duration_order", "runs", ["status", sa.text("coalesce(duration_us, -1)"), "id"])
    op.create_index("ix_runs_status_cost_order", "runs", ["status", sa.text("coalesce(cost, -1)"), "id"])
    op.create_index("ix_runs_user_name_total_tokens_id", "runs", ["user_name", "total_tokens", "id"])
    op.create_index(
        "ix_runs_user_name_duration_order", "runs", ["user_name", sa.text("coalesce(duration_us, -1)"), "id"]
    )
    op.create_index("ix_runs_user_name_cost_order", "runs", ["user_name", sa.text("coalesce(cost, -1)"), "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_user_name_cost_order", table_name="runs")
    op.drop_index("ix_runs_user_name_duration_order", table_name="runs")
    op.drop_index("ix_runs_user_name_total_tokens_id", table_name="runs")
    op.drop_index("ix_runs_status_cost_order", table_name="runs")
    op.drop_index("ix_runs_status_duration_order", table_name="runs")
    op.drop_index("ix_runs_status_total_tokens_id", table_name="runs")
    op.drop_index("ix_runs_agent_name_cost_order", table_name="runs")
    op.drop_index("ix_runs_agent_name_duration_order", table_name="runs")
    op.drop_index("ix_runs_agent_name_total_tokens_id", table_name="runs")
