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
-- A run entering the shared queue (execution_service.durable.admission.DurableAdmission.enter), in one statement: the
-- lock that serializes entries over the replicas is held only while PostgreSQL runs this, never across round trips
-- to a replica whose event loop may be busy. Each statement below sees what earlier holders committed (READ
-- COMMITTED: a new snapshot per statement), so the count is exact. Not admitted: the queue holds its bound.
-- (bigint: psycopg sends a Python int as the smallest type that holds it, and int8 has no implicit cast to int4. The
-- integer signature existed briefly on 2026-12-06: dropped so a call is never ambiguous.)
DROP FUNCTION IF EXISTS agentrun.enter_queue(text, bytea, integer, integer, integer, double precision);
CREATE OR REPLACE FUNCTION agentrun.enter_queue(
    p_run_id text, p_queued bytea, p_worker_concurrency bigint, p_global_limit bigint, p_max_queued bigint,
    p_timeout_s double precision
) RETURNS TABLE (admitted boolean, waits boolean, occupied bigint, capacity bigint)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    v_waiting bigint;
    v_executing bigint;
    v_replicas bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('agentrun.admission'));
    SELECT count(*) FILTER (WHERE q.dequeued_at IS NULL), count(*) FILTER (WHERE q.dequeued_at IS NOT NULL),
        (SELECT count(*) FROM agentrun.replicas r WHERE r.heartbeat_at > now() - interval '1 minute')
    INTO v_waiting, v_executing, v_replicas FROM agentrun.queued_runs q;
    capacity := p_worker_concurrency * greatest(v_replicas, 1);
    IF p_global_limit IS NOT NULL THEN
        capacity := least(capacity, p_global_limit);
    END IF;
    occupied := v_waiting + v_executing;
    waits := occupied >= capacity;
    admitted := NOT (waits AND occupied - capacity >= p_max_queued);
    IF admitted THEN
        -- A schedule's tick workflow replayed after a crash between this and the enqueue enters again.
        INSERT INTO agentrun.queued_runs AS q (run_id, queued, shown, deadline)
        VALUES (p_run_id, p_queued, waits,
                CASE WHEN p_timeout_s > 0 THEN now() + make_interval(secs => p_timeout_s) END)
        ON CONFLICT (run_id) DO UPDATE SET queued = EXCLUDED.queued, shown = EXCLUDED.shown,
            deadline = EXCLUDED.deadline, enqueued_at = now(), dequeued_at = NULL;
    END IF;
    RETURN NEXT;
END
$$;
"""


async def ensure_schema(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        # Two replicas starting together must not both create the tables: one waits for the other.
        await conn.execute("SELECT pg_advisory_lock(hashtext('agentrun.schema'))")
        try:
            await conn.execute(SCHEMA_SQL)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext('agentrun.schema'))")
