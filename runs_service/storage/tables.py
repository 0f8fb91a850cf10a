"""The RunsService schema as SQLAlchemy Core tables (runs, run_steps, tool_calls, sessions, schedule_ticks,
schedule_states).

Alembic migrations (migrations/versions) create exactly this schema; `metadata` is their autogenerate target.
Times are stored UTC (`DateTime(timezone=True)`: timestamptz on PostgreSQL, naive UTC text on SQLite), durations
as integer microseconds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    false,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)


def json_type() -> TypeEngine[Any]:
    """JSON everywhere, JSONB on PostgreSQL."""
    return JSON().with_variant(JSONB(), "postgresql")


TOKEN_COLUMNS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "thinking_tokens",
    "tool_use_prompt_tokens",
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("agent_name", String(255), nullable=False),
    Column("agent_version", String(128), nullable=False, server_default=""),
    Column("user_name", String(255), nullable=False, server_default=""),
    Column("task", Text, nullable=False, server_default=""),
    Column("labels", json_type(), nullable=False),
    Column("variables", json_type(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error_reason", String(128), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("final_response", Text, nullable=False, server_default=""),
    Column("model_name", String(255), nullable=False, server_default=""),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("end_time", DateTime(timezone=True), nullable=True),
    Column("duration_us", BigInteger, nullable=True),
    *(Column(name, BigInteger, nullable=False, server_default="0") for name in TOKEN_COLUMNS),
    Column("cost", Numeric(20, 10), nullable=True),
    Column("cost_currency", String(16), nullable=True),
    Column("price_table_version", String(128), nullable=True),
    Column("steps_taken", Integer, nullable=False, server_default="0"),
    Column("tools_used", json_type(), nullable=False),
    Column("trace_id", String(64), nullable=False, server_default=""),
    # The largest share of its model's input token limit a model call of the run used, 0..1 (migration 0002).
    Column("max_context_window_used", Float, nullable=False, server_default="0"),
    # How long the run waited in ExecutionService's admission queue before start_time (NULL: it did not wait).
    Column("queue_duration_us", BigInteger, nullable=True),
    # How many tool_calls rows the run has (migration 0008): the BASIC view's Run.tool_call_count.
    Column("tool_call_count", Integer, nullable=False, server_default="0"),
    # sha256 (hex) of the canonical record: a replay of the same record is a no-op.
    Column("record_hash", String(64), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # Composition (migration 0005): a child run's parent, the tool call that started it and the top-level run of
    # its tree ("" and depth 0 for a top-level run); its session ("" when none); the run it was forked from.
    Column("parent_run_id", String(36), nullable=False, server_default=""),
    Column("root_run_id", String(36), nullable=False, server_default=""),
    Column("parent_tool_call_id", String(255), nullable=False, server_default=""),
    Column("depth", Integer, nullable=False, server_default="0"),
    Column("session_id", String(128), nullable=False, server_default=""),
    Column("forked_from_run_id", String(36), nullable=True),
    Column("forked_from_sequence", Integer, nullable=True),
    # {"token_usage": {...counts}, "cost": {"amount": "0.0123", "currency_code": ..., "price_table_version": ...}}
    # (either key may be absent); NULL when the run has no descendants. Never summed: stats add each run's own.
    Column("totals_with_descendants", json_type(), nullable=True),
)

Index("ix_runs_agent_name_start_time_id", runs.c.agent_name, runs.c.start_time.desc(), runs.c.id)
Index("ix_runs_status_start_time", runs.c.status, runs.c.start_time)
Index("ix_runs_user_name_start_time", runs.c.user_name, runs.c.start_time)
Index("ix_runs_model_name_start_time", runs.c.model_name, runs.c.start_time)
Index("ix_runs_start_time_id", runs.c.start_time, runs.c.id)
Index("ix_runs_duration_us", runs.c.duration_us)
Index("ix_runs_total_tokens_id", runs.c.total_tokens, runs.c.id)
# ListRuns' orders by duration and cost (runs_service.storage.ordering.sort_key's expressions; migration 0008).
Index("ix_runs_duration_order", func.coalesce(runs.c.duration_us, literal_column("-1")), runs.c.id)
Index("ix_runs_cost_order", func.coalesce(runs.c.cost, literal_column("-1")), runs.c.id)
Index("ix_runs_cost", runs.c.cost)
# The same orders within one agent's, status's or user's runs (migration 0016): filter and order from one range.
Index("ix_runs_agent_name_total_tokens_id", runs.c.agent_name, runs.c.total_tokens, runs.c.id)
Index(
    "ix_runs_agent_name_duration_order",
    runs.c.agent_name,
    func.coalesce(runs.c.duration_us, literal_column("-1")),
    runs.c.id,
)
Index("ix_runs_agent_name_cost_order", runs.c.agent_name, func.coalesce(runs.c.cost, literal_column("-1")), runs.c.id)
Index("ix_runs_status_total_tokens_id", runs.c.status, runs.c.total_tokens, runs.c.id)
Index(
    "ix_runs_status_duration_order", runs.c.status, func.coalesce(runs.c.duration_us, literal_column("-1")), runs.c.id
)
Index("ix_runs_status_cost_order", runs.c.status, func.coalesce(runs.c.cost, literal_column("-1")), runs.c.id)
Index("ix_runs_user_name_total_tokens_id", runs.c.user_name, runs.c.total_tokens, runs.c.id)
Index(
    "ix_runs_user_name_duration_order",
    runs.c.user_name,
    func.coalesce(runs.c.duration_us, literal_column("-1")),
    runs.c.id,
)
Index("ix_runs_user_name_cost_order", runs.c.user_name, func.coalesce(runs.c.cost, literal_column("-1")), runs.c.id)
Index("ix_runs_parent_run_id_start_time", runs.c.parent_run_id, runs.c.start_time)
Index("ix_runs_root_run_id_start_time_id", runs.c.root_run_id, runs.c.start_time, runs.c.id)
Index("ix_runs_session_id_user_name_start_time", runs.c.session_id, runs.c.user_name, runs.c.start_time)
# The last 8 characters of the id (what `agentrun runs list` prints): `id = "*2e3f4a5b"` filters. The expression is
# runs_service.query.filter.run_id_tail's, character for character (migration 0002).
Index("ix_runs_id_tail", func.substr(runs.c.id, literal_column("29")))

run_steps = Table(
    "run_steps",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("sequence", Integer, primary_key=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("duration_us", BigInteger, nullable=False, server_default="0"),
    # agentrun_core.domain.StepKind values.
    Column("kind", String(16), nullable=False),
    # The step payload as a dict (runs_service.storage.rows encodes/decodes it).
    Column("payload", json_type(), nullable=False),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("call_id", String(255), primary_key=True),
    # Index of the call in Run.tool_calls, so a run reads back in the order it was recorded.
    Column("position", Integer, nullable=False, server_default="0"),
    Column("name", String(255), nullable=False),
    Column("server", String(255), nullable=False, server_default=""),
    Column("parameters_json", Text, nullable=False, server_default=""),
    Column("result", Text, nullable=False, server_default=""),
    Column("duration_us", BigInteger, nullable=False, server_default="0"),
    Column("status", String(16), nullable=False),
    Column("start_time", DateTime(timezone=True), nullable=False),
    Column("is_error", Boolean, nullable=False, server_default=false()),
)

Index("ix_tool_calls_name_run_id", tool_calls.c.name, tool_calls.c.run_id)

# One row per session (runs with one session_id and one user), holding only what ListSessions orders and pages by.
# Database triggers on `runs` keep it in step with every write path (insert, update, delete; the SQL is in
# migrations/versions/0005_composition.py), so it is never written by the service itself. Everything else about a
# session (counts, token sums, cost, agents, status) is computed from its runs when it is listed, so it is exact.
# A later migration that recreates `runs` (SQLite batch mode) must recreate those triggers.
sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(128), primary_key=True),
    Column("user_name", String(255), primary_key=True),
    # min(start_time) of the session's runs.
    Column("start_time", DateTime(timezone=True), nullable=False),
    # max(start_time) of the session's runs.
    Column("last_run_start_time", DateTime(timezone=True), nullable=False),
)

Index(
    "ix_sessions_last_run_start_time_session_id_user_name",
    sessions.c.last_run_start_time,
    sessions.c.session_id,
    sessions.c.user_name,
)
Index(
    "ix_sessions_user_name_last_run_start_time_session_id",
    sessions.c.user_name,
    sessions.c.last_run_start_time,
    sessions.c.session_id,
)
Index("ix_sessions_start_time_session_id_user_name", sessions.c.start_time, sessions.c.session_id, sessions.c.user_name)
Index("ix_sessions_user_name_start_time_session_id", sessions.c.user_name, sessions.c.start_time, sessions.c.session_id)

# Scheduled runs (migration 0010_schedules). One row per tick claimed: the primary key on (schedule, tick_time) is
# what lets exactly one of the ExecutionService replicas racing on a tick start its run. Only the latest ticks of
# each schedule are kept (runs_service.storage.schedules.KEEP_TICKS).
schedule_ticks = Table(
    "schedule_ticks",
    metadata,
    # "<agent>/<schedule name>".
    Column("schedule", String(200), primary_key=True),
    Column("tick_time", DateTime(timezone=True), primary_key=True),
    Column("run_id", String(36), nullable=False),
    Column("replica", String(200), nullable=False, server_default=""),
    Column("claimed_time", DateTime(timezone=True), nullable=False),
)

# A schedule's pause state, shared by every replica (absent: never paused nor resumed, so running).
schedule_states = Table(
    "schedule_states",
    metadata,
    Column("schedule", String(200), primary_key=True),
    Column("paused", Boolean, nullable=False, server_default=false()),
    Column("changed_by", String(200), nullable=False, server_default=""),
    Column("changed_time", DateTime(timezone=True), nullable=False),
)
