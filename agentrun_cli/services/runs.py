"""`agentrun-runs-service` (and `python -m runs_service`): serve RunsService, or migrate / downgrade its database.

The same flags, settings and start-up as `agentrun serve runs` (agentrun_cli.services); docs/configuration.md.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated

import typer

from agentrun_cli.services import launch
from agentrun_cli.services.components import runs_component, runs_settings
from agentrun_cli.services.options import (
    CreateDatabase,
    DatabaseUrl,
    DataDir,
    LogFormatOption,
    LogLevelOption,
    Migrate,
    Revision,
    address,
    value,
)

PROGRAM = "agentrun-runs-service"


class RunsCommand(StrEnum):
    SERVE = "serve"
    MIGRATE = "migrate"
    DOWNGRADE = "downgrade"


app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


@app.command(name=PROGRAM)
def runs_service(
    command: Annotated[
        RunsCommand,
        typer.Argument(
            help="serve (the default), migrate (to --revision, default head) or downgrade (to --revision, required: "
            "`--revision base` drops every table and every stored run)."
        ),
    ] = RunsCommand.SERVE,
    listen: Annotated[str | None, address("--address", "AGENTRUN_RUNS_ADDRESS", "127.0.0.1:50051")] = None,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    migrate: Migrate = None,
    create_database: CreateDatabase = False,
    revision: Revision = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
) -> None:
    """agentrun RunsService: stores runs and answers queries about them."""
    from agentrun_core.settings import SettingsError

    try:
        settings = runs_settings(
            address=listen,
            database_url=database_url,
            data_dir=data_dir,
            migrate=migrate,
            create_database=create_database,
            log_level=value(log_level),
            log_format=value(log_format),
        )
    except SettingsError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        raise typer.Exit(launch.EXIT_CONFIGURATION) from None
    if command is RunsCommand.SERVE:
        raise typer.Exit(launch.serve([runs_component(settings)]))

    def administer() -> None:
        from agentrun_core.database_problems import masked_url
        from runs_service.storage.migrate import BadRevision, downgrade, downgrade_suggestion, ensure_database, upgrade

        url = settings.resolved_database_url()
        if command is RunsCommand.MIGRATE:
            if settings.create_database:
                ensure_database(url)
            upgrade(url, revision or "head")
            launch.log.info(
                "database migrated", extra={"database_url": masked_url(url), "revision": revision or "head"}
            )
        elif not revision:  # going down to base by default would drop every table and every stored run
            raise BadRevision(downgrade_suggestion(url))
        else:
            downgrade(url, revision)
            launch.log.info("database downgraded", extra={"database_url": masked_url(url), "revision": revision})

    code = launch.administer(
        administer, what=command.value, log_level=settings.log_level, log_format=settings.log_format
    )
    raise typer.Exit(code)


def main() -> None:
    """The `agentrun-runs-service` console script."""
    app(prog_name=PROGRAM)
