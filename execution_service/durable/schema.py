"""agentrun's own tables in the execution database (beside DBOS's, in schema `agentrun`): replica heartbeats,
cancellation requests and the admission records of runs in the shared queue (execution_service.durable.admission).
Created at launch when missing; all are small and hold no run data beyond a queued run's RunQueued event."""

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
