"""runs.queue_duration_us: how long a run waited in ExecutionService's admission queue before it started.

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-06

Existing runs get NULL (they did not wait). The QUEUED status itself needs no schema change (status is text).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE on both dialects: no table rebuild, so the triggers of 0005 on runs stay.
    op.add_column("runs", sa.Column("queue_duration_us", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("runs", "queue_duration_us")
