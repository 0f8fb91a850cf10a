"""Initial schema: runs, run_steps, tool_calls and the indexes the queries use.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Hand-checked against runs_service.storage.tables (autogenerate draft, then: JSONB variant imports fixed, the
boolean default made portable, indexes created without batch mode).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _tokens() -> list[sa.Column[int]]:
    names = (
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "cached_tokens",
        "thinking_tokens",
        "tool_use_prompt_tokens",
    )
    return [sa.Column(name, sa.BigInteger(), server_default="0", nullable=False) for name in names]


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("agent_name", sa.String(length=255), nullable=False),
        sa.Column("agent_version", sa.String(length=128), server_default="", nullable=False),
        sa.Column("user_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("task", sa.Text(), server_default="", nullable=False),
        sa.Column("labels", _json(), nullable=False),
        sa.Column("variables", _json(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_reason", sa.String(length=128), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("final_response", sa.Text(), server_default="", nullable=False),
        sa.Column("model_name", sa.String(length=255), server_default="", nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_us", sa.BigInteger(), nullable=True),
        *_tokens(),
        sa.Column("cost", sa.Numeric(precision=20, scale=10), nullable=True),
        sa.Column("cost_currency", sa.String(length=16), nullable=True),
        sa.Column("price_table_version", sa.String(length=128), nullable=True),
        sa.Column("steps_taken", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tools_used", _json(), nullable=False),
        sa.Column("trace_id", sa.String(length=64), server_default="", nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_agent_name_start_time_id", "runs", ["agent_name", sa.text("start_time DESC"), "id"])
    op.create_index("ix_runs_status_start_time", "runs", ["status", "start_time"])
    op.create_index("ix_runs_user_name_start_time", "runs", ["user_name", "start_time"])
    op.create_index("ix_runs_model_name_start_time", "runs", ["model_name", "start_time"])
    op.create_index("ix_runs_start_time_id", "runs", ["start_time", "id"])
    op.create_index("ix_runs_duration_us", "runs", ["duration_us"])
    op.create_index("ix_runs_total_tokens", "runs", ["total_tokens"])
    op.create_index("ix_runs_cost", "runs", ["cost"])

    op.create_table(
        "run_steps",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("payload", _json(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_steps_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "sequence", name=op.f("pk_run_steps")),
    )

    op.create_table(
        "tool_calls",
        sa.Column("run_id", sa.String(length=36), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=False),
        sa.Column("position", sa.Integer(), server_default="0", nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("server", sa.String(length=255), server_default="", nullable=False),
        sa.Column("parameters_json", sa.Text(), server_default="", nullable=False),
        sa.Column("result", sa.Text(), server_default="", nullable=False),
        sa.Column("duration_us", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_error", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_tool_calls_run_id_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "call_id", name=op.f("pk_tool_calls")),
    )
    op.create_index("ix_tool_calls_name_run_id", "tool_calls", ["name", "run_id"])


def downgrade() -> None:
    op.drop_index("ix_tool_calls_name_run_id", table_name="tool_calls")
    op.drop_table("tool_calls")
    op.drop_table("run_steps")
    for name in (
        "ix_runs_cost",
        "ix_runs_total_tokens",
        "ix_runs_duration_us",
        "ix_runs_start_time_id",
        "ix_runs_model_name_start_time",
        "ix_runs_user_name_start_time",
        "ix_runs_status_start_time",
        "ix_runs_agent_name_start_time_id",
    ):
        op.drop_index(name, table_name="runs")
    op.drop_table("runs")
