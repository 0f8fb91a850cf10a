"""Why a database cannot be used, in one line an operator can act on: the cause and the fix.

`diagnose(url, error)` reads a driver error (psycopg, SQLite, SQLAlchemy's wrappers) and names the case: the
database does not exist (fix: the `createdb` command, or `--create-database` where the command has it), the server
is unreachable, the password or the role is wrong, the server does not speak PostgreSQL, a SQLite file cannot be
opened. Both services report it at start-up with the URL (password masked: `masked_url`) and exit code 4
(docs/configuration.md): RunsService for its runs database (runs_service.storage.database_problems), ExecutionService
for the execution database of the durable mode (execution_service.durable.schema).
"""

from __future__ import annotations

import re
import shlex
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

CREATE_DATABASE_FLAG = "--create-database"
# The setting a runs database's fixes name (RunsService); the execution database's name theirs.
RUNS_DATABASE_SETTING = "DATABASE_URL / --database-url"


def masked_url(url: str) -> str:
    """`url` with its password masked, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


@dataclass(frozen=True, slots=True)
class Diagnosis:
    cause: str
    fix: str
    # The database named by the URL does not exist on a server that answered (--create-database can create it).
    missing_database: bool = False


def driver_error(error: BaseException) -> BaseException:
    """The driver's own exception inside SQLAlchemy's wrapper (or `error` itself)."""
    return error.orig if isinstance(error, sa_exc.DBAPIError) and error.orig is not None else error


def is_database_error(error: BaseException) -> bool:
    """Whether `error` is a failure to reach or use the database (as opposed to a bug): the server or file cannot be
    reached or opened, or the SQLite file is not a (sound) database."""
    inner = driver_error(error)
    return (
        isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError)
        or isinstance(inner, psycopg.OperationalError | ConnectionError | TimeoutError)
        or type(inner) is sqlite3.DatabaseError  # "file is not a database", "database disk image is malformed"
    )


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _where(url: str) -> str:
    parsed = make_url(url)
    socket = parsed.query.get("host")
    if socket:
        return f"the socket directory {socket if isinstance(socket, str) else socket[0]}"
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def createdb_command(url: str, *, by_administrator: bool = False) -> str:
    """The `createdb` command that creates the database `url` names, as it can be typed: run as the URL's user, or
    (`by_administrator`, when that user may not create databases) as `postgres`, owned by the URL's user (`-O`)."""
    parsed = make_url(url)
    argv = ["createdb", *_server_options(url)]
    if by_administrator:
        argv += ["-U", "postgres"]
        if parsed.username:
            argv += ["-O", parsed.username]
    elif parsed.username:
        argv += ["-U", parsed.username]
    argv.append(parsed.database or "agentrun")
    return shlex.join(argv)


def _server_options(url: str) -> list[str]:
    """`-h HOST -p PORT` of the server `url` names (as set in it)."""
    parsed = make_url(url)
    host = parsed.query.get("host") or parsed.host
    options = []
    if host:
        options += ["-h", host if isinstance(host, str) else host[0]]
    if parsed.port:
        options += ["-p", str(parsed.port)]
    return options


_MISSING_DATABASE = re.compile(r'database "(?P<name>[^"]+)" does not exist')
_BAD_PASSWORD = re.compile(r'password authentication failed for user "(?P<user>[^"]+)"')
_NO_ROLE = re.compile(r'role "(?P<user>[^"]+)" does not exist')
_UNREACHABLE = (
    "connection refused",
    "no such file or directory",
    "could not connect",
    "timeout expired",
    "failed to resolve host",
    "name or service not known",
    "network is unreachable",
    "no route to host",
    "connection timed out",
)
_NOT_POSTGRES = (
    "server closed the connection unexpectedly",
    "received invalid response",
    "expected authentication request",
    "invalid response to ssl negotiation",
    "unsupported frontend protocol",
    "server sent data",
    "lost synchronization with server",
)


def diagnose(
    url: str,
    error: BaseException,
    *,
    setting: str = RUNS_DATABASE_SETTING,
    create_flag: str | None = CREATE_DATABASE_FLAG,
) -> Diagnosis:
    """The cause and fix of `error`, raised while connecting to (or creating, or migrating) the database at `url`;
    `setting`: how the fixes name the URL's setting; `create_flag`: the flag that creates a missing database (None:
    the command has none)."""
    inner = driver_error(error)
    text = str(inner)
    lowered = text.lower()
    if make_url(url).get_backend_name() == "sqlite":
        path = make_url(url).database or ""
        if "unable to open database file" in lowered:
            return Diagnosis(
                f"the SQLite file {path} cannot be opened",
                "check that its directory exists and is writable (--data-dir / AGENTRUN_DATA_DIR)",
            )
        if "file is not a database" in lowered:
            return Diagnosis(f"{path} is not a SQLite database", "point DATABASE_URL or --data-dir at a runs database")
        if "malformed" in lowered:
            return Diagnosis(
                f"the SQLite database {path} is damaged ({first_line(inner)})",
                "restore it from a backup, or point DATABASE_URL or --data-dir at another runs database",
            )
        return Diagnosis(first_line(inner), "check the SQLite file in DATABASE_URL / --data-dir")
    if match := _MISSING_DATABASE.search(text):
        return Diagnosis(
            f'the database "{match["name"]}" does not exist on the server at {_where(url)}',
            f"create it with `{createdb_command(url)}`" + (f", or run again with {create_flag}" if create_flag else ""),
            missing_database=True,
        )
    if match := _BAD_PASSWORD.search(text):
        return Diagnosis(
            f'the server at {_where(url)} refused the password of user "{match["user"]}"',
            f"put the right user and password in {setting} (postgresql://USER:PASSWORD@...)",
        )
    if "no password supplied" in lowered:
        return Diagnosis(
            f"the server at {_where(url)} asks for a password and the URL has none",
            f"add it to {setting} (postgresql://USER:PASSWORD@HOST:PORT/DB)",
        )
    if match := _NO_ROLE.search(text):
        return Diagnosis(
            f'the server at {_where(url)} has no user "{match["user"]}"',
            f"create it (`{shlex.join(['createuser', *_server_options(url), '-U', 'postgres', match['user']])}`, "
            f"adding --createdb if it should create its database itself) or name an existing user in {setting}",
        )
    if any(marker in lowered for marker in _NOT_POSTGRES):
        return Diagnosis(
            f"the server at {_where(url)} does not answer as PostgreSQL ({first_line(inner)})",
            f"check the host and port in {setting}",
        )
    if "timeout expired" in lowered:
        return Diagnosis(
            f"nothing answered as PostgreSQL at {_where(url)} within the connect timeout (a PostgreSQL that does not "
            "respond, or another kind of server on that port)",
            f"check the host and port in {setting} and that PostgreSQL is up there",
        )
    if any(marker in lowered for marker in _UNREACHABLE):
        return Diagnosis(
            f"no PostgreSQL server answers at {_where(url)} ({first_line(inner).removeprefix('connection failed: ')})",
            f"start PostgreSQL, or fix the host and port in {setting}",
        )
    return Diagnosis(first_line(inner), f"check {setting} and that the server is up")


@contextmanager
def diagnosed(
    url: str,
    unusable: Callable[[Diagnosis], Exception],
    *,
    setting: str = RUNS_DATABASE_SETTING,
    create_flag: str | None = CREATE_DATABASE_FLAG,
) -> Iterator[None]:
    """Turns a failure to reach or use the database at `url` inside the block (`is_database_error`) into the
    exception `unusable` makes of its diagnosis (`diagnose`, with `setting` and `create_flag`); any other error
    passes as it is."""
    try:
        yield
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise unusable(diagnose(url, exc, setting=setting, create_flag=create_flag)) from exc
