"""runs.tool_call_count: how many tool calls a run made, so the BASIC view (the runs list) carries it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

Existing runs are backfilled from their tool_calls rows (one UPDATE with a correlated count; the tool_calls primary
key (run_id, call_id) serves it).
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


def downgrade() -> None:
    op.drop_column("runs", "tool_call_count")
