"""agentrun's own tables in the execution database (beside DBOS's, in schema `agentrun`): replica heartbeats and
cancellation requests. Created at launch when missing; both are small and hold no run data."""

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
"""


async def ensure_schema(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # Two replicas starting together must not both create the tables: one waits for the other.
        await conn.execute("SELECT pg_advisory_lock(hashtext('agentrun.schema'))")
        try:
            await conn.execute(SCHEMA_SQL)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('agentrun.schema'))")
