"""Alembic environment for the RunsService database.

The URL comes from, first match wins: `config.attributes["url"]` (runs_service.storage.migrate), `-x url=...`,
the DATABASE_URL environment variable, then `sqlalchemy.url` in alembic.ini. Async driver names
(sqlite+aiosqlite) and plain `postgresql://` URLs are mapped to their synchronous drivers (pysqlite, psycopg 3).
Migrations run synchronously; SQLite uses batch mode (render_as_batch) so ALTERs work there.
"""

from __future__ import annotations

import logging
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from agentrun_core.database_problems import masked_url
from runs_service.storage.engine import connect_args, is_sqlite, sync_url
from runs_service.storage.tables import metadata

config = context.config
logger = logging.getLogger("alembic.env")

if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _database_url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    url = url or os.environ.get("DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(
            "no database URL: pass `-x url=sqlite:////path/runs.db` (or a postgresql:// URL) or set DATABASE_URL"
        )
    return str(url)


def _configure(connection: Connection | None, url: str) -> None:
    context.configure(
        connection=connection,
        url=None if connection is not None else sync_url(url),
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(url),
        compare_type=True,
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    url = _database_url()
    _configure(None, url)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller-provided sync Connection
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = _database_url()
    logger.info("migrating %s", masked_url(url))
    engine = create_engine(sync_url(url), poolclass=pool.NullPool, connect_args=connect_args(url))
    try:
        with engine.connect() as conn:
            _configure(conn, url)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
