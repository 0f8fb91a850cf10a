"""A query the database cancels at its statement timeout is DEADLINE_EXCEEDED with advice, not UNAVAILABLE."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs
from sqlalchemy.engine import make_url

from agentrun_core.grpc_status import error_reason
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.api.conftest import start_runs_client
from tests.support.run_factory import make_run

pytestmark = pytest.mark.timeout(120)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _runs_table_locked(url: str) -> Iterator[None]:
    """Holds an ACCESS EXCLUSIVE lock on `runs`: every query of it waits, until its statement timeout cancels it."""
    with psycopg.connect(_libpq(url)) as connection:
        connection.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        yield
        connection.rollback()


async def test_a_query_cancelled_by_the_statement_timeout_is_deadline_exceeded(
    migrated_db_url: str, tmp_path: Path
) -> None:
    if migrated_db_url.startswith("sqlite"):
        pytest.skip("SQLite has no statement timeout")
    name = make_url(migrated_db_url).database
    with psycopg.connect(_libpq(migrated_db_url), autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{name}\" SET statement_timeout = '300ms'")
    client = await start_runs_client(migrated_db_url, tmp_path)
    try:
        stats = rs.GetRunStatsRequest()
        stats.start_time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC))
        stats.end_time.FromDatetime(datetime(2027, 1, 1, tzinfo=UTC))
        calls = [
            (client.stub.GetRunStats, stats, "run stats"),
            (client.stub.ListRuns, rs.ListRunsRequest(filter='agent_name = "a"'), "list runs"),
        ]
        for method, request, operation in calls:
            with _runs_table_locked(migrated_db_url), pytest.raises(grpc.aio.AioRpcError) as caught:
                await method(request)
            # Before: UNAVAILABLE "the database is unavailable (canceling statement due to statement timeout); retry
            # later", though the same query times out again.
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED, caught.value.details()
            assert error_reason(caught.value) == "QUERY_TIMEOUT"
            details = caught.value.details() or ""
            assert details.startswith(f"{operation}: the database cancelled the query (canceling statement due to")
            assert "statement timeout" in details and "narrow the filter or the time range" in details
            assert "unavailable" not in details
        # A write cannot be narrowed: its advice is the timeout and the database's load.
        record = rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=run_to_pb(make_run()))])
        with _runs_table_locked(migrated_db_url), pytest.raises(grpc.aio.AioRpcError) as caught:
            await client.stub.RecordRuns(record)
        # Before: "record runs: the database cancelled the query (...); narrow the filter or the time range (...)".
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED, caught.value.details()
        assert error_reason(caught.value) == "QUERY_TIMEOUT"
        details = caught.value.details() or ""
        assert details.startswith("record runs: the database cancelled the write (canceling statement due to"), details
        assert "raise the statement_timeout" in details and "check the database's load" in details
        assert "narrow the filter" not in details
        # Without the lock the same calls answer.
        assert (await client.stub.ListRuns(rs.ListRunsRequest())).runs == []
    finally:
        await client.channel.close()
        await client.server.stop(0)
