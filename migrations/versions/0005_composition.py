"""Composition (issue 12): run trees (sub-agents), sessions and forks.

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-08

- runs: parent_run_id, root_run_id, parent_tool_call_id, depth, session_id, forked_from_run_id,
  forked_from_sequence, totals_with_descendants; indexes for parent, root and session lookups.
- sessions: one row per (session_id, user) with the session's first and latest run start, which ListSessions pages
  by. Triggers on runs keep it in step with every insert, update and delete, on SQLite and PostgreSQL alike (so no
  write path, present or future, can forget it). A delete or an update that moves a run recomputes the session's
  bounds from its runs (index ix_runs_session_id_user_name_start_time) only when the run held one of them, and
  removes the session row with its last run. On PostgreSQL the session row is locked before that recomputation, so
  a run of the same session inserted concurrently is either seen by it or applied after it.
- TRUNCATE runs (PostgreSQL) empties sessions too.
- Existing runs get the defaults: top-level, no session, not forked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _run_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("parent_run_id", sa.String(length=36), server_default="", nullable=False),
        sa.Column("root_run_id", sa.String(length=36), server_default="", nullable=False),
        sa.Column("parent_tool_call_id", sa.String(length=255), server_default="", nullable=False),
        sa.Column("depth", sa.Integer(), server_default="0", nullable=False),
        sa.Column("session_id", sa.String(length=128), server_default="", nullable=False),
        sa.Column("forked_from_run_id", sa.String(length=36), nullable=True),
        sa.Column("forked_from_sequence", sa.Integer(), nullable=True),
        sa.Column("totals_with_descendants", _json(), nullable=True),
    ]


_RUN_INDEXES: tuple[tuple[str, list[str]], ...] = (
    ("ix_runs_parent_run_id_start_time", ["parent_run_id", "start_time"]),
    ("ix_runs_root_run_id_start_time_id", ["root_run_id", "start_time", "id"]),
    ("ix_runs_session_id_user_name_start_time", ["session_id", "user_name", "start_time"]),
)

_SESSION_INDEXES: tuple[tuple[str, list[str]], ...] = (
    ("ix_sessions_last_run_start_time_session_id_user_name", ["last_run_start_time", "session_id", "user_name"]),
    ("ix_sessions_user_name_last_run_start_time_session_id", ["user_name", "last_run_start_time", "session_id"]),
    ("ix_sessions_start_time_session_id_user_name", ["start_time", "session_id", "user_name"]),
    ("ix_sessions_user_name_start_time_session_id", ["user_name", "start_time", "session_id"]),
)

_TRIGGERS = ("runs_sessions_insert", "runs_sessions_update", "runs_sessions_delete")
# PostgreSQL only: TRUNCATE fires no row trigger (on SQLite, DELETE without WHERE does: with triggers present it is
# not optimised into a truncate).
_PG_TRUNCATE_TRIGGER = "runs_sessions_truncate"

# --- PostgreSQL: one trigger function for the three events ------------------------------------------------------

_PG_FUNCTION = """
CREATE FUNCTION runs_sessions_sync() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.session_id <> '' THEN
    -- Lock the session row first: this statement waits for a concurrent insert into the session, and the next
    -- statements (each with a fresh snapshot under READ COMMITTED) then see its run.
    PERFORM 1 FROM sessions WHERE session_id = OLD.session_id AND user_name = OLD.user_name FOR UPDATE;
    IF NOT EXISTS (SELECT 1 FROM runs WHERE session_id = OLD.session_id AND user_name = OLD.user_name) THEN
      DELETE FROM sessions WHERE session_id = OLD.session_id AND user_name = OLD.user_name;
    ELSE
      UPDATE sessions SET
        start_time = (SELECT min(r.start_time) FROM runs r
                      WHERE r.session_id = OLD.session_id AND r.user_name = OLD.user_name),
        last_run_start_time = (SELECT max(r.start_time) FROM runs r
                               WHERE r.session_id = OLD.session_id AND r.user_name = OLD.user_name)
      WHERE session_id = OLD.session_id AND user_name = OLD.user_name
        AND (start_time = OLD.start_time OR last_run_start_time = OLD.start_time);
    END IF;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.session_id <> '' THEN
    INSERT INTO sessions (session_id, user_name, start_time, last_run_start_time)
    VALUES (NEW.session_id, NEW.user_name, NEW.start_time, NEW.start_time)
    ON CONFLICT (session_id, user_name) DO UPDATE SET
      start_time = LEAST(sessions.start_time, EXCLUDED.start_time),
      last_run_start_time = GREATEST(sessions.last_run_start_time, EXCLUDED.last_run_start_time);
  END IF;
  RETURN NULL;
END
$$
"""

_PG_TRUNCATE_FUNCTION = """
CREATE FUNCTION runs_sessions_clear() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM sessions;
  RETURN NULL;
END
$$
"""

_PG_TRIGGERS = (
    "CREATE TRIGGER runs_sessions_insert AFTER INSERT ON runs FOR EACH ROW "
    "WHEN (NEW.session_id <> '') EXECUTE FUNCTION runs_sessions_sync()",
    "CREATE TRIGGER runs_sessions_update AFTER UPDATE OF session_id, user_name, start_time ON runs FOR EACH ROW "
    "WHEN (OLD.session_id IS DISTINCT FROM NEW.session_id OR OLD.user_name IS DISTINCT FROM NEW.user_name "
    "OR OLD.start_time IS DISTINCT FROM NEW.start_time) EXECUTE FUNCTION runs_sessions_sync()",
    "CREATE TRIGGER runs_sessions_delete AFTER DELETE ON runs FOR EACH ROW "
    "WHEN (OLD.session_id <> '') EXECUTE FUNCTION runs_sessions_sync()",
    f"CREATE TRIGGER {_PG_TRUNCATE_TRIGGER} AFTER TRUNCATE ON runs FOR EACH STATEMENT "
    "EXECUTE FUNCTION runs_sessions_clear()",
)

# --- SQLite: one writer at a time, so no locking; the same statements per trigger ------------------------------

_SQLITE_ADD_NEW = """
  INSERT INTO sessions (session_id, user_name, start_time, last_run_start_time)
  SELECT NEW.session_id, NEW.user_name, NEW.start_time, NEW.start_time WHERE NEW.session_id <> ''
  ON CONFLICT (session_id, user_name) DO UPDATE SET
    start_time = min(start_time, excluded.start_time),
    last_run_start_time = max(last_run_start_time, excluded.last_run_start_time);
"""

_SQLITE_REMOVE_OLD = """
  DELETE FROM sessions
  WHERE OLD.session_id <> '' AND session_id = OLD.session_id AND user_name = OLD.user_name
    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.session_id = OLD.session_id AND r.user_name = OLD.user_name);
  UPDATE sessions SET
    start_time = (SELECT min(r.start_time) FROM runs r
                  WHERE r.session_id = OLD.session_id AND r.user_name = OLD.user_name),
    last_run_start_time = (SELECT max(r.start_time) FROM runs r
                           WHERE r.session_id = OLD.session_id AND r.user_name = OLD.user_name)
  WHERE OLD.session_id <> '' AND session_id = OLD.session_id AND user_name = OLD.user_name
    AND (start_time = OLD.start_time OR last_run_start_time = OLD.start_time);
"""

_SQLITE_TRIGGERS = (
    f"CREATE TRIGGER runs_sessions_insert AFTER INSERT ON runs WHEN NEW.session_id <> '' BEGIN {_SQLITE_ADD_NEW} END",
    "CREATE TRIGGER runs_sessions_update AFTER UPDATE OF session_id, user_name, start_time ON runs "
    "WHEN OLD.session_id IS NOT NEW.session_id OR OLD.user_name IS NOT NEW.user_name "
    f"OR OLD.start_time IS NOT NEW.start_time BEGIN {_SQLITE_REMOVE_OLD} {_SQLITE_ADD_NEW} END",
    "CREATE TRIGGER runs_sessions_delete AFTER DELETE ON runs WHEN OLD.session_id <> '' "
    f"BEGIN {_SQLITE_REMOVE_OLD} END",
)

# Sessions of runs stored before this migration have none (session_id is new): nothing to backfill.


def upgrade() -> None:
    for column in _run_columns():
        op.add_column("runs", column)
    for name, columns in _RUN_INDEXES:
        op.create_index(name, "runs", columns)

    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(length=128), nullable=False),
        sa.Column("user_name", sa.String(length=255), nullable=False),
        sa.Column("start_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_run_start_time", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "user_name", name=op.f("pk_sessions")),
    )
    for name, columns in _SESSION_INDEXES:
        op.create_index(name, "sessions", columns)

    if op.get_context().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRUNCATE_FUNCTION)
        for statement in _PG_TRIGGERS:
            op.execute(statement)
    else:
        for statement in _SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for trigger in _TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON runs" if postgres else f"DROP TRIGGER IF EXISTS {trigger}")
    if postgres:
        op.execute(f"DROP TRIGGER IF EXISTS {_PG_TRUNCATE_TRIGGER} ON runs")
        op.execute("DROP FUNCTION IF EXISTS runs_sessions_sync()")
        op.execute("DROP FUNCTION IF EXISTS runs_sessions_clear()")
    for name, _columns in _SESSION_INDEXES:
        op.drop_index(name, table_name="sessions")
    op.drop_table("sessions")
    for name, _columns in _RUN_INDEXES:
        op.drop_index(name, table_name="runs")
    for column in reversed(_run_columns()):
        op.drop_column("runs", column.name)
