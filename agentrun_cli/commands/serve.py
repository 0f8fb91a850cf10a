"""`agentrun serve [runs|execution|all]`: the services in this process, for development.

The same flags, settings, start-up and exit codes as `agentrun-runs-service` / `agentrun-execution-service`
(agentrun_cli.services), with development defaults: the schema is migrated at start, authentication is off unless
AGENTRUN_AUTH says otherwise, and `all` points ExecutionService at the RunsService it starts and also serves the web
console (`agentrun web`) on both. Each is one entry in `_components`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from agentrun_cli import output
from agentrun_cli.addresses import client_target
from agentrun_cli.commands.web import web_component, web_settings
from agentrun_cli.errors import EXIT_USAGE, CliError, handle_errors
from agentrun_cli.services import launch
from agentrun_cli.services.components import (
    Component,
    execution_component,
    execution_settings,
    runs_component,
    runs_settings,
)
from agentrun_cli.services.options import (
    AgentsDir,
    CreateDatabase,
    DatabaseUrl,
    DataDir,
    ExecutionDatabaseUrl,
    LogFormatOption,
    LogLevelOption,
    McpConfig,
    address,
    value,
)
from agentrun_cli.settings import CliSettings, ServeSettings

if TYPE_CHECKING:
    from agentrun_web.settings import WebSettings
    from execution_service.config import ExecutionSettings
    from runs_service.config import RunsSettings


class Which(StrEnum):
    RUNS = "runs"
    EXECUTION = "execution"
    ALL = "all"


@handle_errors
def serve_command(
    which: Annotated[Which, typer.Argument(help="Which service(s) to run.")] = Which.ALL,
    runs_address: Annotated[str | None, address("--runs-address", "AGENTRUN_RUNS_ADDRESS", "127.0.0.1:50051")] = None,
    execution_address: Annotated[
        str | None, address("--execution-address", "AGENTRUN_EXECUTION_ADDRESS", "127.0.0.1:50052")
    ] = None,
    migrate: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Migrate the runs database on start.")] = True,
    create_database: CreateDatabase = False,
    database_url: DatabaseUrl = None,
    data_dir: DataDir = None,
    agents_dir: AgentsDir = None,
    mcp_config: McpConfig = None,
    execution_database_url: ExecutionDatabaseUrl = None,
    log_level: LogLevelOption = None,
    log_format: LogFormatOption = None,
    web_address: Annotated[
        str | None,
        typer.Option("--web-address", help="Web console address (AGENTRUN_WEB_ADDRESS, default 127.0.0.1:8080)."),
    ] = None,
    web: Annotated[bool, typer.Option("--web/--no-web", help="With `all`: also serve the web console.")] = True,
) -> None:
    """Start RunsService, ExecutionService or both in this process (development); `all` also serves the web console.
    Ctrl-C stops them."""
    from agentrun_core.settings import SettingsError

    try:
        runs = runs_settings(
            address=runs_address,
            address_flag="--runs-address",
            database_url=database_url,
            data_dir=data_dir,
            migrate=migrate,
            create_database=create_database,
            log_level=value(log_level),
            log_format=value(log_format),
        )
        execution = execution_settings(
            address=execution_address,
            address_flag="--execution-address",
            agents_dir=agents_dir,
            mcp_config=mcp_config,
            data_dir=data_dir,
            log_level=value(log_level),
            log_format=value(log_format),
            execution_database_url=execution_database_url,
        )
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if which is Which.ALL:
        _refuse_any_port(runs.listen_address, "--runs-address", "RunsService", "ExecutionService and the console call")
        if web:
            _refuse_any_port(execution.listen_address, "--execution-address", "ExecutionService", "the console calls")
        execution = execution.with_overrides(runs_service_target=client_target(runs.listen_address))
    try:
        auth_turned_off = ServeSettings.from_env().auth is None
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if auth_turned_off:
        from agentrun_core.auth import AuthSettings

        # `serve` is for development: authentication is off unless AGENTRUN_AUTH says otherwise.
        runs = runs.with_overrides(auth=AuthSettings.off())
        execution = execution.with_overrides(auth=AuthSettings.off())
        output.print_line(
            "authentication is off (development); to turn it on set AGENTRUN_AUTH=tokens and AGENTRUN_TOKENS_FILE "
            "(docs/security.md)"
        )

    console: WebSettings | None = None
    if which is Which.ALL and web:
        from agentrun_web.settings import WebAuth

        console = web_settings(
            CliSettings.from_env().with_overrides(
                runs_target=client_target(runs.listen_address),
                execution_target=client_target(execution.listen_address),
            ),
            web_address,
            auth=WebAuth.OFF if auth_turned_off else None,
        )
    code = launch.serve(
        _components(which, runs, execution, console),
        announce=output.print_line,
        ready="Ctrl-C stops; try `agentrun agents list`",
    )
    if code != launch.EXIT_OK:
        raise typer.Exit(code)


def _components(
    which: Which, runs: RunsSettings, execution: ExecutionSettings, console: WebSettings | None
) -> list[Component]:
    """What `which` starts, in start order (stopped in reverse: the console first)."""
    components: list[Component] = []
    if which in (Which.RUNS, Which.ALL):
        components.append(runs_component(runs))
    if which in (Which.EXECUTION, Which.ALL):
        components.append(execution_component(execution))
    if console is not None:
        components.append(web_component(console))
    return components


def _refuse_any_port(address: str, flag: str, service: str, callers: str) -> None:
    """`serve all` tells each component the others' addresses before they bind: port 0 (any free port) cannot be
    told. Exit 2 naming the flag (`serve runs` / `serve execution` alone announce the port they bound)."""
    if not address.startswith("unix:") and address.rpartition(":")[2] == "0":
        raise CliError(
            f"{flag} {address}: `serve all` needs a fixed {service} port ({callers} it); port 0 (any free port) works "
            f"with `serve {'runs' if service == 'RunsService' else 'execution'}` alone, which prints the port it bound",
            EXIT_USAGE,
        )
