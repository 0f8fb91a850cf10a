"""`agentrun web`: the web console (runs, run details, live runs, starting runs, stats) in a browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agentrun_cli import output
from agentrun_cli.commands.common import settings_of
from agentrun_cli.errors import EXIT_USAGE, CliError, handle_errors
from agentrun_cli.services import launch
from agentrun_cli.services.components import Component, Started
from agentrun_cli.settings import CliSettings

if TYPE_CHECKING:
    from agentrun_web.server import RunningConsole
    from agentrun_web.settings import WebSettings


def web_settings(cli: CliSettings, address: str | None, **overrides: object) -> WebSettings:
    """The console's settings: its environment (docs/web.md), the CLI's service targets and TLS files, the flags."""
    from agentrun_core.settings import SettingsError
    from agentrun_web.settings import WebSettings

    try:
        return WebSettings.load(
            address=address,
            runs_target=cli.runs_target,
            execution_target=cli.execution_target,
            tls_ca=cli.tls_ca,
            tls_client_cert=cli.tls_cert,
            tls_client_key=cli.tls_key,
            **overrides,
        )
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def describe(console: RunningConsole, settings: WebSettings) -> str:
    from agentrun_web.settings import WebAuth

    if settings.token is not None:
        who = "single-user (AGENTRUN_WEB_TOKEN)"
    elif settings.auth is WebAuth.OFF:
        who = "no sign-in (authentication off)"
    else:
        who = "sign in with your token"
    return f"Web console at {console.url} ({who})"


def web_component(settings: WebSettings) -> Component:
    """The console as one of the components a process serves (`agentrun web`, `agentrun serve all`)."""

    async def start() -> Started:
        from agentrun_web.server import start_console

        console = await start_console(settings)
        targets = f"RunsService {settings.runs_target}, ExecutionService {settings.execution_target}"
        return Started(stop=console.stop, lines=(describe(console, settings), f"  calling {targets}"))

    return Component("web console", start, settings.log_level, settings.log_format)


@handle_errors
def web_command(
    ctx: typer.Context,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Listen address HOST:PORT (AGENTRUN_WEB_ADDRESS, default 127.0.0.1:8080)."),
    ] = None,
) -> None:
    """Serve the web console: runs, run details with a waterfall, live runs, starting runs, stats. Ctrl-C stops."""
    settings = web_settings(settings_of(ctx), address)
    code = launch.serve([web_component(settings)], announce=output.print_line, ready="Ctrl-C stops")
    if code != launch.EXIT_OK:
        raise typer.Exit(code)
