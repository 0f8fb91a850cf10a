"""Database fixtures for RunsService tests.

- `pg_server` / `pg_url` (session): a PostgreSQL server found or started by tests.support.postgres (skipped with
  the reason when there is none); `pg_url` is its admin URL.
- `db_url` (function, parametrised sqlite / postgres): a fresh, empty database (no schema).
- `migrated_db_url` (function, parametrised the same way): a fresh database already at the migration head
  (copied from a template migrated once per session, so it costs a file copy / CREATE DATABASE .. TEMPLATE).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runs_service.storage import migrate
from tests.support.postgres import PostgresServer, find_postgres

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server, description = find_postgres()
    if server is None:
        pytest.skip(description)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg_url(pg_server: PostgresServer) -> str:
    return pg_server.admin_url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "runs.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _postgres_template(pg_server: PostgresServer) -> str:
    url = pg_server.create_database(prefix="agentrun_template")
    migrate.upgrade(url)
    name = url.rsplit("/", 1)[1].split("?", 1)[0]
    return name


@pytest.fixture(params=BACKENDS)
def migrated_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the migration head on each backend."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        path = tmp_path / "runs.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database(template=request.getfixturevalue("_postgres_template"))
    try:
        yield url
    finally:
        server.drop_database(url)
