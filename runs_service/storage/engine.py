"""Database URLs and the async engine RunsService stores runs with (SQLite via aiosqlite, PostgreSQL via psycopg 3).

- `sqlite:///path`, `sqlite+pysqlite:///path`, `sqlite+aiosqlite:///path` -> aiosqlite; every connection gets WAL,
  synchronous=NORMAL, foreign_keys=ON and a busy timeout, and transactions are begun by us (so a writer can ask
  for `BEGIN IMMEDIATE` with the `sqlite_begin` execution option, see `SQLITE_WRITE_OPTIONS`).
- `postgresql://`, `postgresql+psycopg://`, `postgresql+psycopg2://` -> psycopg 3 (async engine; sync for Alembic).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentrun_core.database_problems import masked_url

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000
# Execution options for a SQLite write transaction: take the write lock at BEGIN (no deadlock on lock upgrade).
SQLITE_WRITE_OPTIONS: dict[str, str] = {"sqlite_begin": "IMMEDIATE"}

# libpq waits for the OS's TCP timeout (minutes) on a host that does not answer: fail a connection after this.
POSTGRES_CONNECT_TIMEOUT_S = 10

_SQLITE_DRIVERS = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
_POSTGRES_DRIVERS = {"postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2", "postgresql+psycopg_async"}


class UnsupportedDatabaseURL(ValueError):
    """The URL names a database or driver RunsService does not support."""


def database_url_default(data_dir: Path) -> str:
    """The default database: a SQLite file `runs.db` in `data_dir`."""
    return f"sqlite:///{(data_dir / 'runs.db').resolve()}"


def _parse(url: str) -> URL:
    try:
        return make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError on malformed URLs
        raise UnsupportedDatabaseURL(f"not a database URL: {masked_url(url)!r} ({exc})") from exc


def is_sqlite(url: str) -> bool:
    return _parse(url).drivername in _SQLITE_DRIVERS


def async_url(url: str) -> URL:
    """`url` with the async driver this service uses for its dialect."""
    parsed = _parse(url)
    if parsed.drivername in _SQLITE_DRIVERS:
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in _POSTGRES_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    raise UnsupportedDatabaseURL(
        f"unsupported database URL scheme {parsed.drivername!r} in {masked_url(url)!r}: "
        "use sqlite:///path/to/runs.db or postgresql://user@host:5432/dbname"
    )


def sync_url(url: str) -> str:
    """`url` with a synchronous driver (pysqlite or psycopg 3), for Alembic and admin tasks."""
    parsed = async_url(url)
    if parsed.drivername == "sqlite+aiosqlite":
        parsed = parsed.set(drivername="sqlite")
    return parsed.render_as_string(hide_password=False)


def connect_args(url: str) -> dict[str, Any]:
    """Driver connection arguments for `url`: for PostgreSQL, a connect timeout unless the URL sets its own."""
    if is_sqlite(url) or "connect_timeout" in _parse(url).query:
        return {}
    return {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}


def orjson_text(value: Any) -> str:
    """JSON text of `value` (orjson), the serializer of every JSON column."""
    return orjson.dumps(value).decode()


def _install_sqlite_hooks(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We emit BEGIN ourselves (see _on_begin); the driver must not.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


def create_engine_for(url: str, **engine_options: Any) -> AsyncEngine:
    """An async engine for `url` (SQLite file or PostgreSQL), configured as described in the module docstring."""
    target = async_url(url)
    options: dict[str, Any] = {
        "json_serializer": orjson_text,
        "json_deserializer": orjson.loads,
    }
    if target.drivername == "sqlite+aiosqlite":
        if target.database and target.database != ":memory:":
            Path(target.database).parent.mkdir(parents=True, exist_ok=True)
    else:
        options["pool_pre_ping"] = False
        options["connect_args"] = connect_args(url)
        options["pool_size"] = 10
        options["max_overflow"] = 20
    options.update(engine_options)
    engine = create_async_engine(target, **options)
    if target.drivername == "sqlite+aiosqlite":
        _install_sqlite_hooks(engine)
    logger.info("database engine created", extra={"database_url": masked_url(url), "driver": target.drivername})
    return engine
