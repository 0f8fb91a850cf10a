"""Unreachable or unmigrated databases surface as StorageUnavailable / SchemaOutdated, never raw driver errors."""

from __future__ import annotations

import socket

import pytest

from runs_service.errors import SchemaOutdated, StorageUnavailable
from runs_service.queries import ListRunsQuery, Scope
from runs_service.storage.engine import create_engine_for
from runs_service.storage.repository import RunRepository
from tests.support.run_factory import make_run

SECRET = b"test-page-token-secret-0123456789"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_postgres_is_storage_unavailable() -> None:
    engine = create_engine_for(f"postgresql://postgres@127.0.0.1:{_closed_port()}/nothing?connect_timeout=2")
    repo = RunRepository(engine, SECRET)
    try:
        with pytest.raises(
            StorageUnavailable,
            match=r"ping: the database is unavailable \(connection failed: .*Connection refused\); retry later$",
        ):
            await repo.ping()
        with pytest.raises(StorageUnavailable, match="record run"):
            await repo.record_run(make_run())
        with pytest.raises(StorageUnavailable, match="list runs"):
            await repo.list_runs(ListRunsQuery(), Scope())
    finally:
        await engine.dispose()


async def test_unmigrated_database_is_schema_outdated(db_url: str) -> None:
    engine = create_engine_for(db_url)
    repo = RunRepository(engine, SECRET)
    try:
        with pytest.raises(SchemaOutdated, match="agentrun-runs-service migrate"):
            await repo.get_run(make_run().id, full=False, scope=Scope())
    finally:
        await engine.dispose()
