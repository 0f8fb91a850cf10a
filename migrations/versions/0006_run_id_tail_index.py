"""Index on the last 8 characters of run ids: `id = "*2e3f4a5b"` filters (the ids `agentrun runs list` prints).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06

An expression index (substr(id, 29), the same expression runs_service.query.filter.run_id_tail writes): no column,
nothing for RecordRun to fill in; built in one statement (a few seconds per
million runs). Prefix filters need no index of their own: they are range scans of the primary key.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_id_tail", "runs", [sa.text("substr(id, 29)")])


def downgrade() -> None:
    op.drop_index("ix_runs_id_tail", table_name="runs")
