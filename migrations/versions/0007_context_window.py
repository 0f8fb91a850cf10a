"""runs.max_context_window_used: the largest share of its model's input token limit a model call of the run used.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Existing runs get 0 (unknown). The per-model-call figures live in the steps' JSON payloads and need no column.
Chained after main's head when issue 9's branch merged main: one linear chain, 0001 -> 0005 -> 0006 -> 0002.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects (SQLite >= 3.35 drops columns too): no table rebuild, so the triggers of
    # 0005 on runs stay.
    op.add_column("runs", sa.Column("max_context_window_used", sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    op.drop_column("runs", "max_context_window_used")
