"""Indexes for the runs list filtered by agent (or status) and ordered by tokens, cost or duration.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

An agent filter with a non-default order ("agent-03, most tokens first") had only two plans: walk the order's index
(0008) backwards and discard the other agents' runs, or read every run of the agent and sort. Both read 100k+ rows at
1M runs (0.4-1.4 s p95, bench/web.py). An index on (agent_name, <sort key>, id) serves the filter and the order
together: the scan stops after a page. The sort keys are runs_service.storage.ordering.sort_key's expressions,
character for character (as in 0008), or the database cannot use the indexes for the order.
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


def downgrade() -> None:
    op.drop_index("ix_runs_agent_name_cost_order", table_name="runs")
    op.drop_index("ix_runs_agent_name_duration_order", table_name="runs")
    op.drop_index("ix_runs_agent_name_total_tokens_id", table_name="runs")
