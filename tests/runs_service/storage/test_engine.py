from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from agentrun_core.database_problems import masked_url
from runs_service.storage.engine import (
    UnsupportedDatabaseURL,
    async_url,
    create_engine_for,
    database_url_default,
    sync_url,
)


def test_url_mapping(tmp_path: Path) -> None:
    default = database_url_default(tmp_path)
    assert default == f"sqlite:///{tmp_path.resolve() / 'runs.db'}"
    assert async_url(default).drivername == "sqlite+aiosqlite"
    assert sync_url("sqlite+aiosqlite:////x/runs.db") == "sqlite:////x/runs.db"
    assert async_url("postgresql://u@h:5432/db").drivername == "postgresql+psycopg"
    assert sync_url("postgresql://u:pw@h:5432/db") == "postgresql+psycopg://u:pw@h:5432/db"
    assert sync_url("postgresql+psycopg://u@/db?host=/tmp/s") == "postgresql+psycopg://u@/db?host=%2Ftmp%2Fs"
    assert "pw" not in masked_url("postgresql://u:pw@h/db")
    with pytest.raises(UnsupportedDatabaseURL, match="mysql"):
        async_url("mysql://u@h/db")


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    engine = create_engine_for(database_url_default(tmp_path / "data"))
    try:
        async with engine.connect() as conn:
            values = [
                (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
            ]
        assert values == ["wal", 1, 1, 10_000]
    finally:
        await engine.dispose()
