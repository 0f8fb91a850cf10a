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
from alembic.util.exc import CommandError
from sqlalchemy import create_engine, pool, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from agentrun_core.database_problems import Diagnosis, createdb_command, masked_url
from agentrun_core.settings import SettingsError
from runs_service.errors import SchemaNewer, SchemaOutdated
from runs_service.storage.database_problems import DatabaseUnusable, database_problems
from runs_service.storage.engine import connect_args, sync_url

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ALEMBIC_INI = PROJECT_ROOT / "alembic.ini"
MIGRATIONS_DIR = PROJECT_ROOT / "migrations"
MIGRATE_COMMAND = "agentrun-runs-service migrate"
DOWNGRADE_COMMAND = "agentrun-runs-service downgrade"


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


def revision_before_head() -> str:
    """The revision just before the newest (what a downgrade by one migration goes to); "base" when there is one."""
    script = ScriptDirectory.from_config(alembic_config()).get_revision(head_revision())
    down = script.down_revision if script is not None else None
    return down if isinstance(down, str) else "base"


def known_revisions() -> frozenset[str]:
    """Every migration revision this build has (so a database at another one was migrated by a newer build)."""
    return frozenset(script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions())


def schema_newer(url: str, current: str, head: str) -> SchemaNewer:
    return SchemaNewer(
        f"the database {masked_url(url)} is at schema revision {current}, newer than this build knows (its newest is "
        f"{head}): a newer agentrun migrated it; run that newer agentrun (or downgrade the database to {head} with it: "
        f"`agentrun-runs-service downgrade --revision {head}` of the newer build)"
    )


def _refuse_unknown_schema(url: str) -> None:
    """SchemaNewer when the database at `url` is at a revision this build does not know (Alembic would fail with
    "Can't locate revision identified by ..."); nothing otherwise."""
    current = current_revision(url)
    if current is not None and current not in known_revisions():
        raise schema_newer(url, current, head_revision())


def current_revision(url: str) -> str | None:
    """The revision the database at `url` is at, or None when it has never been migrated. DatabaseUnusable when
    the database cannot be reached (the message says why and what to do)."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool, connect_args=connect_args(url))
    try:
        with database_problems(url), engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


class BadRevision(SettingsError):
    """A --revision that names no revision of this build, or one `migrate` / `downgrade` cannot go to from the
    database's current revision (exit code 2, like any bad setting). The message is one line."""


def ordered_revisions() -> list[str]:
    """This build's revisions, oldest first."""
    return [
        script.revision for script in reversed(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
    ]


def _revision_list() -> str:
    return f"{', '.join(ordered_revisions())} (the newest, also called head) or base (no tables)"


def _resolve(revision: str) -> str | None:
    """The full revision id `revision` names ("head", an id, a unique prefix), None for "base"; BadRevision when it
    names none of this build's revisions. Relative forms (+1, -1, 0010+1) are left to Alembic: the empty string."""
    if revision == "base":
        return None
    if any(sign in revision for sign in "+-"):
        return ""
    try:
        script = ScriptDirectory.from_config(alembic_config()).get_revision(revision)
    except CommandError as exc:
        raise BadRevision(f"--revision {revision}: {exc}; this build's revisions are {_revision_list()}") from None
    return script.revision if script is not None else None


def _position(revision: str | None) -> int:
    """Where `revision` (None: base) is in this build's history: 0 for base, 1 for the oldest migration, ..."""
    return 0 if revision is None else ordered_revisions().index(revision) + 1


def _bad_target(revision: str, exc: CommandError, current: str | None) -> BadRevision:
    at = f"at revision {current}" if current is not None else "at no revision (never migrated)"
    return BadRevision(
        f"--revision {revision}: {exc} (the database is {at}); this build's revisions are {_revision_list()}"
    )


def upgrade(url: str, revision: str = "head") -> None:
    """Migrates the database at `url` to `revision`; DatabaseUnusable when it cannot be reached, SchemaNewer when a
    newer build migrated it (to a revision this build does not know), BadRevision when `revision` names no revision
    of this build or one older than the database's (upgrading there would do nothing: that is a downgrade)."""
    sync_url(url)  # an unsupported URL is refused before Alembic runs
    target = _resolve(revision)
    _refuse_unknown_schema(url)
    current = current_revision(url)
    if target != "" and current is not None and _position(target) < _position(current):
        name = target or "base"
        raise BadRevision(
            f"--revision {revision}: the database is at revision {current}, newer than {name}; migrate only goes up "
            f"(it would change nothing): to go down, run `{DOWNGRADE_COMMAND} --revision {name}`"
        )
    logger.info("upgrading database schema", extra={"database_url": masked_url(url), "revision": revision})
    try:
        with database_problems(url):
            command.upgrade(alembic_config(url), revision)
    except CommandError as exc:
        raise _bad_target(revision, exc, current) from None


def _refuse_missing_sqlite_file(url: str) -> None:
    """DatabaseUnusable when `url` names a SQLite file that does not exist (connecting would create an empty one)."""
    target = make_url(sync_url(url))
    database = target.database
    if target.get_backend_name() == "sqlite" and database and database != ":memory:" and not Path(database).exists():
        raise DatabaseUnusable(
            url,
            Diagnosis(
                f"{target.database} does not exist, so there is nothing to downgrade",
                "check --data-dir / --database-url (AGENTRUN_DATA_DIR / AGENTRUN_DATABASE_URL)",
                missing_database=True,
            ),
        )


def downgrade(url: str, revision: str = "base") -> None:
    """Migrates the database at `url` down to `revision`; SchemaNewer when a newer build migrated it, BadRevision
    when `revision` names no revision of this build, or one that is not older than the database's, DatabaseUnusable
    when it cannot be reached (a SQLite file that does not exist is not created)."""
    sync_url(url)
    target = _resolve(revision)
    _refuse_missing_sqlite_file(url)
    _refuse_unknown_schema(url)
    current = current_revision(url)
    if current is None:
        raise BadRevision(
            f"--revision {revision}: the database has no schema (it was never migrated): nothing to downgrade"
        )
    if target != "" and _position(target) > _position(current):
        raise BadRevision(
            f"--revision {revision}: the database is at revision {current}, older than {target}; downgrade only goes "
            f"down: to go up, run `{MIGRATE_COMMAND} --revision {target}`"
        )
    logger.info("downgrading database schema", extra={"database_url": masked_url(url), "revision": revision})
    try:
        with database_problems(url):
            command.downgrade(alembic_config(url), revision)
    except CommandError as exc:
        raise _bad_target(revision, exc, current) from None


def downgrade_suggestion(url: str) -> str:
    """Why `downgrade` without --revision is refused, suggesting the revision before the database's current one
    (SchemaNewer when a newer build migrated it: this build cannot downgrade it at all)."""
    _refuse_missing_sqlite_file(url)
    _refuse_unknown_schema(url)
    current = current_revision(url)
    if current is None:
        return "downgrade needs --revision; the database has no schema (it was never migrated): nothing to downgrade"
    revisions = ordered_revisions()
    before = revisions[revisions.index(current) - 1] if revisions.index(current) > 0 else "base"
    return (
        f"downgrade needs --revision, the schema revision to go down to (e.g. --revision {before}, the one before "
        f"the database's current {current}); `--revision base` drops every table and every stored run"
    )


_MAINTENANCE_DATABASES = ("postgres", "template1")


def ensure_database(url: str) -> bool:
    """Creates the PostgreSQL database `url` names when it does not exist (connecting to the server's maintenance
    database); True when it created it. SQLite creates its file by itself: nothing to do. DatabaseUnusable when the
    server cannot be reached or the user may not create databases."""
    target = make_url(sync_url(url))
    if target.get_backend_name() == "sqlite":
        return False
    name = target.database
    if not name:
        raise DatabaseUnusable(url, Diagnosis("the URL names no database", "end it with /DATABASE_NAME"))
    last_error: Exception | None = None
    for maintenance in _MAINTENANCE_DATABASES:
        engine = create_engine(
            target.set(database=maintenance),
            poolclass=pool.NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args=connect_args(url),
        )
        try:
            with database_problems(url), engine.connect() as connection:
                found = connection.execute(text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": name})
                if found.first() is not None:
                    return False
                quoted = connection.dialect.identifier_preparer.quote(name)
                try:
                    connection.execute(text(f"CREATE DATABASE {quoted}"))
                except sa_exc.ProgrammingError as exc:  # e.g. permission denied to create database
                    user = target.username or "this user"
                    raise DatabaseUnusable(
                        url,
                        Diagnosis(
                            f"{user} may not create databases ({str(exc.orig).strip().splitlines()[0]})",
                            f"ask an administrator to run `{createdb_command(url, by_administrator=True)}` (as "
                            f"postgres or another user with CREATEDB; -O makes {user} its owner), or connect as a user "
                            "with CREATEDB",
                        ),
                    ) from exc
                logger.warning("database created", extra={"database_url": masked_url(url)})
                return True
        except DatabaseUnusable as exc:
            if not exc.diagnosis.missing_database:  # the server or the user is the problem, not the database
                raise
            last_error = exc  # this maintenance database is missing: try the next one
        finally:
            engine.dispose()
    assert last_error is not None
    raise last_error


def migrate_hint(url: str, migrate_command: str = MIGRATE_COMMAND) -> str:
    masked = " (with the real password for ***)" if masked_url(url) != url else ""
    return (
        f"run `{migrate_command}`{masked} (or `alembic -c {ALEMBIC_INI} -x url={masked_url(url)} upgrade head`) "
        "to migrate it"
    )


def check_schema(url: str, migrate_command: str = MIGRATE_COMMAND) -> None:
    """Raises SchemaOutdated unless the database at `url` is at the migration head; its message suggests
    `migrate_command` (give the service's own database flags, so it migrates this database as printed). SchemaNewer
    (no migrate command helps) when a newer build migrated it to a revision this build does not know."""
    current = current_revision(url)
    head = head_revision()
    if current == head:
        return
    if current is not None and current not in known_revisions():
        raise schema_newer(url, current, head)
    state = "has no schema yet" if current is None else f"is at schema revision {current}"
    hint = migrate_hint(url, migrate_command)
    raise SchemaOutdated(f"the database {masked_url(url)} {state}, this service needs revision {head}: {hint}")


async def upgrade_async(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade, url, revision)


async def downgrade_async(url: str, revision: str = "base") -> None:
    await asyncio.to_thread(downgrade, url, revision)


async def current_revision_async(url: str) -> str | None:
    return await asyncio.to_thread(current_revision, url)


async def check_schema_async(url: str) -> None:
    await asyncio.to_thread(check_schema, url)
