"""Maps database driver errors to RunsService errors (StorageUnavailable, QueryTimedOut, SchemaOutdated,
SumOutOfRange) with context."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from sqlalchemy import exc as sa_exc

from agentrun_core.database_problems import driver_error, first_line, is_database_error
from runs_service.errors import QueryTimedOut, RunsServiceError, SchemaOutdated, StorageUnavailable
from runs_service.storage.sums import is_sqlite_overflow, out_of_range

logger = logging.getLogger(__name__)

_MIGRATE_HINT = "run `agentrun-runs-service migrate` to create or upgrade the schema"


def is_sqlite_busy(error: BaseException) -> bool:
    """True for SQLite's transient 'database is locked' / 'database is busy' errors."""
    if not isinstance(error, sa_exc.OperationalError):
        return False
    text = str(error.orig).lower()
    return "database is locked" in text or "database is busy" in text


def _is_missing_table(error: sa_exc.DBAPIError) -> bool:
    if isinstance(error.orig, psycopg.errors.UndefinedTable):
        return True
    text = f"{type(error.orig).__name__} {error.orig}".lower()
    return isinstance(error, sa_exc.OperationalError) and "no such table" in text


@asynccontextmanager
async def storage_errors(operation: str, *, write: bool = False, **context: object) -> AsyncIterator[None]:
    """Turns failures to reach or use the database inside the block (database_problems.is_database_error, the one
    classification start-up uses too) into StorageUnavailable, a query the database cancelled (its statement timeout)
    into QueryTimedOut (its advice fits a `write`: no filter narrows it), and missing tables into SchemaOutdated,
    logging the operation and its context. RunsServiceErrors pass through unchanged; anything else is logged and
    re-raised."""
    try:
        yield
    except RunsServiceError:
        raise
    except sa_exc.TimeoutError as exc:  # connection pool exhausted
        logger.warning("%s: no database connection available: %s", operation, exc, extra={"context": context})
        raise StorageUnavailable(f"{operation}: no database connection available in time: {exc}") from exc
    except Exception as exc:
        if isinstance(exc, sa_exc.DBAPIError) and _is_missing_table(exc):
            logger.error("%s: database schema missing: %s", operation, exc.orig, extra={"context": context})
            raise SchemaOutdated(
                f"{operation}: the database has no RunsService schema ({exc.orig}); {_MIGRATE_HINT}"
            ) from exc
        if isinstance(driver_error(exc), psycopg.errors.QueryCanceled):  # an OperationalError, but not unavailability
            cause = first_line(driver_error(exc))
            logger.warning("%s: query cancelled: %s", operation, cause, extra={"context": context})
            raise QueryTimedOut(_timed_out(operation, cause, write=write)) from exc
        if is_sqlite_overflow(exc):
            logger.warning("%s: a sum overflowed: %s", operation, exc, extra={"context": context})
            raise out_of_range(operation) from exc
        invalidated = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        if is_database_error(exc) or invalidated:
            cause = first_line(driver_error(exc))
            logger.warning("%s: database unavailable: %s", operation, cause, extra={"context": context})
            raise StorageUnavailable(f"{operation}: the database is unavailable ({cause}); retry later") from exc
        if isinstance(exc, sa_exc.DBAPIError):
            logger.exception("%s: database error", operation, extra={"context": context})
        raise


def _timed_out(operation: str, cause: str, *, write: bool) -> str:
    """QueryTimedOut's message: a read can be narrowed; a write cannot, and waited on locks or a loaded server."""
    if write:
        return (
            f"{operation}: the database cancelled the write ({cause}): it ran past the database's statement timeout; "
            "raise the statement_timeout of the database's role or database, or check the database's load (locks "
            "held by other sessions, I/O)"
        )
    return (
        f"{operation}: the database cancelled the query ({cause}): it ran past the database's statement timeout; "
        "narrow the filter or the time range (or raise the statement_timeout of the database's role or database)"
    )
