"""agentrun's own tables in the execution database (beside DBOS's, in schema `agentrun`): replica heartbeats,
cancellation requests, each durable run's journal (execution_service.durable.journal): its event stream
(`journal_entries`, one row per entry, keyed by (run id, offset)) and the checkpointed results of its calls
(`journal_checkpoints`, keyed by (run id, operation number)), and the admission records of runs in the shared queue
(`queued_runs`, execution_service.durable.admission). Created at launch when missing."""

from __future__ import annotations

import psycopg

SCHEMA_SQL = """
CREATE SCHEMA IF NOT EXISTS agentrun;
CREATE TABLE IF NOT EXISTS agentrun.replicas (
    replica_id text PRIMARY KEY,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS agentrun.cancel_requests (
    run_id text PRIMARY KEY,
    after_turn boolean NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS agentrun.journal_entries (
    run_id text NOT NULL,
    "offset" integer NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (run_id, "offset")
);
CREATE TABLE IF NOT EXISTS agentrun.journal_checkpoints (
    run_id text NOT NULL,
    operation integer NOT NULL,
    name text NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (run_id, operation)
);
CREATE TABLE IF NOT EXISTS agentrun.queued_runs (
    run_id text PRIMARY KEY,
    queued bytea NOT NULL,
    shown boolean NOT NULL,
    deadline timestamptz,
    enqueued_at timestamptz NOT NULL DEFAULT now(),
    dequeued_at timestamptz
);
CREATE INDEX IF NOT EXISTS queued_runs_deadline ON agentrun.queued_runs (deadline)
    WHERE dequeued_at IS NULL AND deadline IS NOT NULL;
"""


async def ensure_schema(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # Two replicas starting together must not both create the tables: one waits for the other.
        await conn.execute("SELECT pg_advisory_lock(hashtext('agentrun.schema'))")
        try:
            await conn.execute(SCHEMA_SQL)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('agentrun.schema'))")
