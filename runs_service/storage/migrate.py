"""Schema migrations for the RunsService database (Alembic, scripts in <repo>/migrations).

The functions here are synchronous (Alembic is); from async code call the `*_async` variants, which run Alembic in
a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, pool

from runs_service.errors import SchemaOutdated
from runs_service.storage.engine import redact, sync_url

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
MIGRATE_COMMAND = "agentrun-runs-service migrate"


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for the project's migrations, targeting `url` when given."""
    config = Config(str(ALEMBIC_INI)) if ALEMBIC_INI.exists() else Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Leave the host application's logging alone when called from code.
    config.attributes["configure_logging"] = False
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str:
    """The newest migration revision (what `upgrade(url, "head")` brings a database to)."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:
        raise RuntimeError(f"no migrations found in {MIGRATIONS_DIR}")
    return head


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at, or None when it has never been migrated."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    logger.info("upgrading database schema", extra={"database_url": redact(url), "revision": revision})
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    logger.info("downgrading database schema", extra={"database_url": redact(url), "revision": revision})
    command.downgrade(alembic_config(url), revision)


def migrate_hint(url: str, migrate_command: str = MIGRATE_COMMAND) -> str:
    masked = " (with the real password for ***)" if redact(url) != url else ""
    return (
        f"run `{migrate_command}`{masked} (or `alembic -c {ALEMBIC_INI} -x url={redact(url)} upgrade head`) "
        "to migrate it"
    )


def check_schema(url: str, migrate_command: str = MIGRATE_COMMAND) -> None:
    """Raises SchemaOutdated unless the database at `url` is at the migration head; its message suggests
    `migrate_command` (give the service's own database flags, so it migrates this database as printed)."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return
    state = "has no schema yet" if current is None else f"is at schema revision {current}"
    hint = migrate_hint(url, migrate_command)
    raise SchemaOutdated(f"the database {redact(url)} {state}, this service needs revision {head}: {hint}")


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def downgrade_async(url: str, revision: str = "base") -> None:
    await asyncio.to_thread(downgrade, url, revision)


async def current_revision_async(url: str) -> str | None:
    return await asyncio.to_thread(current_revision, url)


async def check_schema_async(url: str) -> None:
    await asyncio.to_thread(check_schema, url)
