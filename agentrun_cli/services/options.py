"""The command-line flags of the services, each defined once (`agentrun-runs-service`, `agentrun-execution-service`
and `agentrun serve` use the same definitions). Every flag overrides its environment variable; unset (None) keeps
the variable's value (docs/configuration.md)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class LogFormat(StrEnum):
    JSON = "json"
    TEXT = "text"
    AUTO = "auto"


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of the runs database (env DATABASE_URL; default: SQLite <data dir>/runs.db).",
        show_default=False,
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory (env AGENTRUN_DATA_DIR; default: data).", show_default=False),
]
Migrate = Annotated[
    bool | None,
    typer.Option(
        "--migrate/--no-migrate",
        help="Migrate the runs database schema before serving (env AGENTRUN_MIGRATE_ON_START).",
        show_default=False,
    ),
]
CreateDatabase = Annotated[
    bool,
    typer.Option(
        "--create-database",
        help="Create the PostgreSQL database named by the URL when it does not exist (needs the CREATEDB right).",
    ),
]
Revision = Annotated[
    str | None,
    typer.Option(
        "--revision", help="Target revision for migrate (default head) or downgrade (required; base drops every table)."
    ),
]
RunsServiceTarget = Annotated[
    str | None,
    typer.Option(
        "--runs-service",
        help="RunsService host:port to publish runs to (env AGENTRUN_RUNS_SERVICE_TARGET).",
        show_default=False,
    ),
]
ExecutionDatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--execution-database-url",
        help="PostgreSQL URL that turns on durable mode: runs survive a replica's death and any replica serves any "
        "run (env AGENTRUN_EXECUTION_DATABASE_URL; default: off, the embedded mode).",
        show_default=False,
    ),
]
AgentsDir = Annotated[
    Path | None,
    typer.Option("--agents-dir", help="Directory of .prompt files (env AGENTRUN_AGENTS_DIR).", show_default=False),
]
McpConfig = Annotated[
    Path | None,
    typer.Option("--mcp-config", help="MCP servers (mcp.json) (env AGENTRUN_MCP_CONFIG).", show_default=False),
]
LogLevelOption = Annotated[
    LogLevel | None,
    typer.Option(
        "--log-level",
        case_sensitive=False,
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (env AGENTRUN_LOG_LEVEL; default: INFO).",
        show_default=False,
    ),
]
LogFormatOption = Annotated[
    LogFormat | None,
    typer.Option(
        "--log-format",
        case_sensitive=False,
        help="json, text, or auto (text on a terminal) (env AGENTRUN_LOG_FORMAT).",
        show_default=False,
    ),
]


def address(flag: str, variable: str, default: str) -> object:
    """A listen address flag (`--address`, or `--runs-address` where one command starts several services)."""
    return typer.Option(
        flag, help=f"Listen address host:port (env {variable}; default: {default}).", show_default=False
    )


def value(option: StrEnum | None) -> str | None:
    return None if option is None else option.value
