"""What every command shares: the settings from the root callback, the --json option, parameter errors."""

from __future__ import annotations

from typing import Annotated

import typer

from agentrun_cli.errors import EXIT_USAGE, CliError
from agentrun_cli.params import ParamError
from agentrun_cli.settings import CliSettings

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (the proto3 JSON mapping) instead of tables.")]


def settings_of(ctx: typer.Context) -> CliSettings:
    settings = ctx.find_object(CliSettings)
    return settings if settings is not None else CliSettings()


def usage_error(error: ValueError) -> CliError:
    """A malformed option value, reported like the services' INVALID_ARGUMENT (exit 2)."""
    return CliError(str(error), EXIT_USAGE)


__all__ = ["JsonOption", "ParamError", "settings_of", "usage_error"]
