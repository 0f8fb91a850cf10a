"""`agentrun web`: the web console (runs, run details, live runs, starting runs, stats) in a browser."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from agentrun_cli import output
from agentrun_cli.commands.common import settings_of
from agentrun_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, handle_errors
from agentrun_cli.settings import CliSettings
from agentrun_core import event_loop
from agentrun_core.serving import wait_for_stop_signal

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


@handle_errors
def web_command(
    ctx: typer.Context,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Listen address HOST:PORT (AGENTRUN_WEB_ADDRESS, default 127.0.0.1:8080)."),
    ] = None,
) -> None:
    """Serve the web console: runs, run details with a waterfall, live runs, starting runs, stats. Ctrl-C stops."""
    from agentrun_core.logging_setup import configure_logging

    settings = web_settings(settings_of(ctx), address)
    configure_logging(settings.log_level, settings.log_format)
    try:
        event_loop.run(_serve(settings))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except OSError as exc:
        raise CliError(f"cannot start: {exc.strerror or exc}") from None


async def _serve(settings: WebSettings) -> None:
    from agentrun_core.settings import SettingsError
    from agentrun_web.server import start_console

    try:
        console = await start_console(settings)
    except SettingsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    output.print_line(describe(console, settings))
    targets = f"RunsService {settings.runs_target}, ExecutionService {settings.execution_target}"
    output.print_line(f"  {targets}; Ctrl-C stops")
    try:
        await wait_for_stop_signal()
    finally:
        await console.stop()
