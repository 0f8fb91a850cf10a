"""`agentrun-execution-service` (and `python -m execution_service`): serve ExecutionService.

The same flags, settings and start-up as `agentrun serve execution` (agentrun_cli.services); docs/configuration.md.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from agentrun_cli.services import launch
from agentrun_cli.services.components import execution_component, execution_settings
from agentrun_cli.services.options import (
    AgentsDir,
    DataDir,
    ExecutionDatabaseUrl,
    LogFormatOption,
    LogLevelOption,
    McpConfig,
    RunsServiceTarget,
    address,
    value,
)

PROGRAM = "agentrun-execution-service"

app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


@app.command(name=PROGRAM)
def execution_service(
    listen: Annotated[str | None, address("--address", "AGENTRUN_EXECUTION_ADDRESS", "127.0.0.1:50052")] = None,
    runs_service: RunsServiceTarget = None,
    agents_dir: AgentsDir = None,
    mcp_config: McpConfig = None,
    data_dir: DataDir = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
    execution_database_url: ExecutionDatabaseUrl = None,
) -> None:
    """agentrun ExecutionService: runs agents and streams every step."""
    from agentrun_core.settings import SettingsError

    try:
        settings = execution_settings(
            address=listen,
            runs_service=runs_service,
            agents_dir=agents_dir,
            mcp_config=mcp_config,
            data_dir=data_dir,
            log_level=value(log_level),
            log_format=value(log_format),
            execution_database_url=execution_database_url,
        )
    except SettingsError as exc:
        print(f"{PROGRAM}: {exc}", file=sys.stderr)
        raise typer.Exit(launch.EXIT_CONFIGURATION) from None
    raise typer.Exit(launch.serve([execution_component(settings)]))


def main() -> None:
    """The `agentrun-execution-service` console script."""
    app(prog_name=PROGRAM)
