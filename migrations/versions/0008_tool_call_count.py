"""runs.tool_call_count: how many tool calls a run made, so the BASIC view (the runs list) carries it; and the
indexes the runs page's orders need.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Existing runs are backfilled from their tool_calls rows (one UPDATE with a correlated count; the tool_calls primary
key (run_id, call_id) serves it).

ListRuns sorts by coalesce(duration_us, -1) and coalesce(cost, -1) (unknown values first), then id: no index served
those orders, so "longest first" or "most expensive first" sorted every run (0.7-1.2 s over 1M runs, bench/web.py).
An index on each sort key, id included, serves them with or without a filter (the scan stops after a page);
(total_tokens, id) replaces (total_tokens) for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects: no table rebuild, so the triggers of 0005 on runs stay.
    op.add_column("runs", sa.Column("tool_call_count", sa.Integer(), server_default="0", nullable=False))
    op.execute(
        "UPDATE runs SET tool_call_count = (SELECT count(*) FROM tool_calls WHERE tool_calls.run_id = runs.id) "
        "WHERE EXISTS (SELECT 1 FROM tool_calls WHERE tool_calls.run_id = runs.id)"
    )
    # The expressions are runs_service.storage.ordering.sort_key's, character for character.
    op.create_index("ix_runs_duration_order", "runs", [sa.text("coalesce(duration_us, -1)"), "id"])
    op.create_index("ix_runs_cost_order", "runs", [sa.text("coalesce(cost, -1)"), "id"])
    op.create_index("ix_runs_total_tokens_id", "runs", ["total_tokens", "id"])
    op.drop_index("ix_runs_total_tokens", table_name="runs")


def downgrade() -> None:
    op.create_index("ix_runs_total_tokens", "runs", ["total_tokens"])
    op.drop_index("ix_runs_total_tokens_id", table_name="runs")
    op.drop_index("ix_runs_cost_order", table_name="runs")
    op.drop_index("ix_runs_duration_order", table_name="runs")
    op.drop_column("runs", "tool_call_count")
