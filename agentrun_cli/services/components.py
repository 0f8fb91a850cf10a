"""What a process can serve: each service as a `Component` (how to start it, what to print once it serves, how to
stop it), built from its settings: the environment overridden by the flags given (None keeps the variable's value).

`agentrun serve all` starts a list of components in order and stops them in reverse; another one (a web console)
is one more `Component`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from agentrun_cli.addresses import bound_address
from agentrun_core.settings import EnvSettings, SettingsError

if TYPE_CHECKING:
    from execution_service.config import ExecutionSettings
    from runs_service.config import RunsSettings


S = TypeVar("S", bound=EnvSettings)


def with_flags(settings: S, flags: dict[str, str], **values: Any) -> S:
    """`settings` with the flags' values (None: not given); a bad one is a SettingsError naming the flag (`flags`:
    the flag of each field), not the settings field it sets."""
    try:
        return settings.with_overrides(**values)
    except SettingsError as exc:
        field, _, rest = str(exc).partition(" ")
        if field in flags:
            raise SettingsError(f"{flags[field]} {rest}") from None
        raise


@dataclass(frozen=True, slots=True)
class Started:
    """A component that serves: the lines to tell the user, and how to stop it."""

    stop: Callable[[], Awaitable[None]]
    lines: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Component:
    name: str
    start: Callable[[], Awaitable[Started]]
    # Logging follows the first component's settings.
    log_level: str = "INFO"
    log_format: str = "auto"


def runs_settings(
    *,
    address: str | None = None,
    database_url: str | None = None,
    data_dir: Path | None = None,
    migrate: bool | None = None,
    create_database: bool | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
    address_flag: str = "--address",
) -> RunsSettings:
    """RunsSettings from the environment and these flags. SettingsError names a bad variable or flag
    (`address_flag`: the flag that gave `address`)."""
    from runs_service.config import RunsSettings

    flags = {"listen_address": address_flag, "database_url": "--database-url", "data_dir": "--data-dir"}
    return with_flags(
        RunsSettings.from_env(),
        flags,
        listen_address=address,
        database_url=database_url,
        data_dir=data_dir,
        migrate_on_start=migrate,
        create_database=create_database or None,
        log_level=log_level,
        log_format=log_format,
    )


def execution_settings(
    *,
    address: str | None = None,
    runs_service: str | None = None,
    agents_dir: Path | None = None,
    mcp_config: Path | None = None,
    data_dir: Path | None = None,
    log_level: str | None = None,
    log_format: str | None = None,
    execution_database_url: str | None = None,
    address_flag: str = "--address",
) -> ExecutionSettings:
    """ExecutionSettings from the environment and these flags. SettingsError names a bad variable or flag
    (`address_flag`: the flag that gave `address`)."""
    from execution_service.config import ExecutionSettings

    flags = {
        "listen_address": address_flag,
        "runs_service_target": "--runs-service",
        "data_dir": "--data-dir",
        "execution_database_url": "--execution-database-url",
    }
    return with_flags(
        ExecutionSettings.from_env(),
        flags,
        listen_address=address,
        runs_service_target=runs_service,
        agents_dir=agents_dir,
        mcp_config=mcp_config,
        data_dir=data_dir,
        log_level=log_level,
        log_format=log_format,
        execution_database_url=execution_database_url,
    )


def runs_component(settings: RunsSettings) -> Component:
    async def start() -> Started:
        from runs_service.server import start_server

        running = await start_server(settings)
        return Started(
            stop=lambda: running.stop(settings.shutdown_grace_s),
            lines=(f"RunsService listening on {bound_address(settings.listen_address, running.port)}",),
        )

    return Component("RunsService", start, settings.log_level, settings.log_format)


def execution_component(settings: ExecutionSettings) -> Component:
    async def start() -> Started:
        from execution_service.server import start_server

        running = await start_server(settings)
        return Started(
            stop=lambda: running.stop(settings.shutdown_grace_s),
            lines=(
                f"ExecutionService listening on {bound_address(settings.listen_address, running.port)}",
                f"  recording runs to RunsService at {settings.runs_service_target}",
                *(
                    (f"  durable mode: replica {settings.resolved_replica_id} on the execution database",)
                    if settings.durable
                    else ()
                ),
            ),
        )

    return Component("ExecutionService", start, settings.log_level, settings.log_format)
