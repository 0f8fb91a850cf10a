from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runs_service.storage.engine import create_engine_for
from runs_service.storage.repository import RunRepository

SECRET = b"test-page-token-secret-0123456789"


@pytest.fixture
async def repo(migrated_db_url: str) -> AsyncIterator[RunRepository]:
    """A repository over a fresh migrated database (SQLite and PostgreSQL)."""
    engine = create_engine_for(migrated_db_url)
    try:
        yield RunRepository(engine, SECRET)
    finally:
        await engine.dispose()
