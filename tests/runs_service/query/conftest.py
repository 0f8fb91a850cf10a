from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.runs_service.query.filter_db import postgres_engine, sqlite_engine


@pytest.fixture(scope="module")
def sqlite_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    yield from sqlite_engine(Path(tmp_path_factory.mktemp("filters")))


@pytest.fixture(scope="module")
def postgresql_db() -> Iterator[sa.Engine]:
    yield from postgres_engine()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> sa.Engine:
    """Each seeded database in turn."""
    engine: sa.Engine = request.getfixturevalue(f"{request.param}_db")
    return engine
