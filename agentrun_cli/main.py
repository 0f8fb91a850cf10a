"""The `agentrun` command: the Typer app and the options every command shares."""

from __future__ import annotations

from typing import Annotated

import typer

from agentrun_cli.commands.agents import agents_app
from agentrun_cli.commands.chat import chat_command
from agentrun_cli.commands.run import run_command
from agentrun_cli.commands.runs import runs_app
from agentrun_cli.commands.schedules import schedules_app
from agentrun_cli.commands.serve import serve_command
from agentrun_cli.commands.sessions import sessions_app
from agentrun_cli.commands.web import web_command
from agentrun_cli.errors import EXIT_USAGE, CliError, report
from agentrun_cli.settings import (
    DEFAULT_EXECUTION_TARGET,
    DEFAULT_RUNS_TARGET,
    EXECUTION_TARGET_ENV,
    RUNS_TARGET_ENV,
    TLS_CA_ENV,
    TLS_CLIENT_CERT_ENV,
    TLS_CLIENT_KEY_ENV,
    TOKEN_ENV,
    CliSettings,
)
from agentrun_core.bearer_token import clean_token, token_problem
from agentrun_core.settings import SettingsError

# Importing the modules registers `runs stats`, `runs tools`, `runs diff`, `runs export`, `runs delete` and
# `runs fork` on runs_app.
from agentrun_cli.commands import stats as _stats  # noqa: F401  # isort: skip
from agentrun_cli.commands import diff as _diff  # noqa: F401  # isort: skip
from agentrun_cli.commands import export as _export  # noqa: F401  # isort: skip
from agentrun_cli.commands import delete as _delete  # noqa: F401  # isort: skip
from agentrun_cli.commands import fork as _fork  # noqa: F401  # isort: skip

app = typer.Typer(
    name="agentrun",
    help="Run AI agents and query the complete record of every run.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main(
    ctx: typer.Context,
    execution_target: Annotated[
        str | None,
        typer.Option(
            "--execution-target",
            help=f"ExecutionService host:port (env {EXECUTION_TARGET_ENV}; default: {DEFAULT_EXECUTION_TARGET}).",
            show_default=False,
        ),
    ] = None,
    runs_target: Annotated[
        str | None,
        typer.Option(
            "--runs-target",
            help=f"RunsService host:port (env {RUNS_TARGET_ENV}; default: {DEFAULT_RUNS_TARGET}).",
            show_default=False,
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", help=f"Bearer token sent on every call (env {TOKEN_ENV}).", show_default=False),
    ] = None,
    tls_ca: Annotated[
        str | None,
        typer.Option(
            "--tls-ca", help=f"CA certificate (PEM): connect with TLS (env {TLS_CA_ENV}).", show_default=False
        ),
    ] = None,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            "--tls-cert", help=f"Client certificate (PEM), mTLS (env {TLS_CLIENT_CERT_ENV}).", show_default=False
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            "--tls-key", help=f"Client private key (PEM), mTLS (env {TLS_CLIENT_KEY_ENV}).", show_default=False
        ),
    ] = None,
) -> None:
    # The environment, then the flags (an empty flag or variable counts as unset).
    try:
        ctx.obj = CliSettings.from_env().with_overrides(
            execution_target=execution_target or None,
            runs_target=runs_target or None,
            token=token or None,
            tls_ca=tls_ca or None,
            tls_cert=tls_cert or None,
            tls_key=tls_key or None,
        )
    except SettingsError as exc:  # a bad variable is named by the message; a bad flag by its field: say the flag
        field, _, rest = str(exc).partition(" ")
        report(CliError(f"{_FLAGS.get(field, field)} {rest}", EXIT_USAGE))
        raise typer.Exit(EXIT_USAGE) from None
    ctx.obj = _checked_token(ctx.obj, from_flag=bool(token))


def _checked_token(settings: CliSettings, *, from_flag: bool) -> CliSettings:
    """`settings` with the token's surrounding whitespace dropped (a file's trailing CR / newline); exit 2 naming
    the flag or variable when it holds another control or non-ASCII character (gRPC would refuse the metadata)."""
    if settings.token is None:
        return settings
    token = clean_token(settings.token)
    problem = token_problem(token)
    if problem is not None:
        report(CliError(f"the bearer token ({'--token' if from_flag else TOKEN_ENV}) {problem}", EXIT_USAGE))
        raise typer.Exit(EXIT_USAGE)
    return settings.with_overrides(token=token) if token != settings.token else settings


# The flags of the root callback by CliSettings field, for messages about a bad flag value.
_FLAGS = {
    "execution_target": "--execution-target",
    "runs_target": "--runs-target",
    "token": "--token",
    "tls_ca": "--tls-ca",
    "tls_cert": "--tls-cert",
    "tls_key": "--tls-key",
}


app.command("run")(run_command)
app.command("chat")(chat_command)
app.command("serve")(serve_command)
app.command("web")(web_command)
app.add_typer(runs_app, name="runs")
app.add_typer(agents_app, name="agents")
app.add_typer(sessions_app, name="sessions")
app.add_typer(schedules_app, name="schedules")
