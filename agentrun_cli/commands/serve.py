"""`agentrun serve [runs|execution|all]`: the services in this process, for development."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from agentrun_cli import output
from agentrun_cli.addresses import client_target
from agentrun_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, handle_errors
from agentrun_cli.settings import TLS_CA_ENV, TLS_CLIENT_CERT_ENV, TLS_CLIENT_KEY_ENV, CliSettings
from agentrun_core import event_loop
from agentrun_core.serving import wait_for_stop_signal

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
    runs_address: Annotated[
        str | None, typer.Option("--runs-address", help="RunsService listen address (AGENTRUN_RUNS_ADDRESS).")
    ] = None,
    execution_address: Annotated[
        str | None,
        typer.Option("--execution-address", help="ExecutionService listen address (AGENTRUN_EXECUTION_ADDRESS)."),
    ] = None,
    migrate: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Migrate the runs database on start.")] = True,
    web_address: Annotated[
        str | None,
        typer.Option("--web-address", help="Web console address (AGENTRUN_WEB_ADDRESS, default 127.0.0.1:8080)."),
    ] = None,
    web: Annotated[bool, typer.Option("--web/--no-web", help="With `all`: also serve the web console.")] = True,
) -> None:
    """Start RunsService, ExecutionService or both in this process (development); `all` also serves the web console.
    Ctrl-C stops them."""
    from agentrun_core.logging_setup import configure_logging
    from agentrun_core.settings import SettingsError
    from execution_service.config import ExecutionSettings
    from runs_service.config import RunsSettings

    try:
        runs_settings = RunsSettings.from_env().with_overrides(listen_address=runs_address, migrate_on_start=migrate)
        exec_settings = ExecutionSettings.from_env().with_overrides(listen_address=execution_address)
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if which is Which.ALL:
        exec_settings = exec_settings.with_overrides(runs_service_target=client_target(runs_settings.listen_address))
    auth_turned_off = not os.environ.get("AGENTRUN_AUTH")
    if auth_turned_off:
        from agentrun_core.auth import AuthSettings

        # `serve` is for development: authentication is off unless AGENTRUN_AUTH says otherwise.
        runs_settings = runs_settings.with_overrides(auth=AuthSettings.off())
        exec_settings = exec_settings.with_overrides(auth=AuthSettings.off())
        output.print_line(
            "authentication is off (development); to turn it on set AGENTRUN_AUTH=tokens and AGENTRUN_TOKENS_FILE "
            "(docs/security.md)"
        )
    web_settings = None
    if which is Which.ALL and web:
        from agentrun_cli.commands.web import web_settings as console_settings
        from agentrun_web.settings import WebAuth

        web_settings = console_settings(
            CliSettings(
                runs_target=client_target(runs_settings.listen_address),
                execution_target=client_target(exec_settings.listen_address),
                tls_ca=os.environ.get(TLS_CA_ENV) or None,
                tls_cert=os.environ.get(TLS_CLIENT_CERT_ENV) or None,
                tls_key=os.environ.get(TLS_CLIENT_KEY_ENV) or None,
            ),
            web_address,
            auth=WebAuth.OFF if auth_turned_off else None,
        )
    configure_logging(runs_settings.log_level, runs_settings.log_format)
    from runs_service.errors import RunsServiceError

    try:
        event_loop.run(_serve(which, runs_settings, exec_settings, web_settings))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RunsServiceError as exc:  # SchemaOutdated (run with --migrate), StorageUnavailable
        raise CliError(f"RunsService cannot start: {exc.message}") from None
    except OSError as exc:
        raise CliError(f"cannot start: {exc}") from None
    except SettingsError as exc:  # authentication or TLS misconfigured
        raise CliError(f"cannot start: {exc}", EXIT_USAGE) from None


async def _serve(
    which: Which, runs_settings: RunsSettings, exec_settings: ExecutionSettings, web_settings: WebSettings | None
) -> None:
    """Starts the chosen servers in this process, serves until Ctrl-C or SIGTERM, then stops them in reverse order
    (the console first; ExecutionService drains its runs and outbox before RunsService goes away)."""
    stops: list[Callable[[], Awaitable[None]]] = []
    try:
        if which in (Which.RUNS, Which.ALL):
            from runs_service.server import start_server as start_runs_server

            runs = await start_runs_server(runs_settings)
            stops.append(lambda: runs.stop(runs_settings.shutdown_grace_s))
            output.print_line(f"RunsService listening on {runs_settings.listen_address}")
        if which in (Which.EXECUTION, Which.ALL):
            from execution_service.server import start_server as start_execution_server

            execution = await start_execution_server(exec_settings)
            stops.append(lambda: execution.stop(exec_settings.shutdown_grace_s))
            output.print_line(f"ExecutionService listening on {exec_settings.listen_address}")
            output.print_line(f"  recording runs to RunsService at {exec_settings.runs_service_target}")
        if web_settings is not None:
            from agentrun_cli.commands.web import describe
            from agentrun_web.server import start_console

            console = await start_console(web_settings)
            stops.append(console.stop)
            output.print_line(describe(console, web_settings))
        output.print_line("Ctrl-C stops; try `agentrun agents list`")
        await wait_for_stop_signal()
    finally:
        for stop in reversed(stops):
            await stop()
