"""runs.max_context_window_used: the largest share of its model's input token limit a model call of the run used.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

Existing runs get 0 (unknown). The per-model-call figures live in the steps' JSON payloads and need no column.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("max_context_window_used", sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("max_context_window_used")
