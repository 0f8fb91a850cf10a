"""schedule_ticks and schedule_states: scheduled runs claimed once per tick, and their shared pause state.

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-06

schedule_ticks' primary key (schedule, tick_time) is the claim: of the ExecutionService replicas racing on one tick,
exactly one inserts the row and starts the run.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "schedule_ticks",
        sa.Column("schedule", sa.String(200), nullable=False),
        sa.Column("tick_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("replica", sa.String(200), server_default="", nullable=False),
        sa.Column("claimed_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule", "tick_time", name="pk_schedule_ticks"),
    )
    op.create_table(
        "schedule_states",
        sa.Column("schedule", sa.String(200), nullable=False),
        sa.Column("paused", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("changed_by", sa.String(200), server_default="", nullable=False),
        sa.Column("changed_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("schedule", name="pk_schedule_states"),
    )


def downgrade() -> None:
    op.drop_table("schedule_states")
    op.drop_table("schedule_ticks")
