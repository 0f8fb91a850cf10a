"""`agentrun serve [runs|execution|all]`: the services in this process, for development."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import grpc
import typer
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentrun_cli import output
from agentrun_cli.addresses import client_target
from agentrun_cli.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError, handle_errors

if TYPE_CHECKING:
    from execution_service.config import ExecutionSettings
    from runs_service.config import RunsSettings

STARTUP_TIMEOUT_S = 60.0


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
) -> None:
    """Start RunsService, ExecutionService or both in this process (development). Ctrl-C stops them."""
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
    if not os.environ.get("AGENTRUN_AUTH"):
        from agentrun_core.auth import AuthSettings

        # `serve` is for development: authentication is off unless AGENTRUN_AUTH says otherwise.
        runs_settings = runs_settings.with_overrides(auth=AuthSettings.off())
        exec_settings = exec_settings.with_overrides(auth=AuthSettings.off())
        output.print_line(
            "authentication is off (development); to turn it on set AGENTRUN_AUTH=tokens and AGENTRUN_TOKENS_FILE "
            "(docs/security.md)"
        )
    configure_logging(runs_settings.log_level, runs_settings.log_format)
    from runs_service.domain import RunsServiceError

    try:
        asyncio.run(_serve(which, runs_settings, exec_settings))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except RunsServiceError as exc:  # SchemaOutdated (run with --migrate), StorageUnavailable
        raise CliError(f"RunsService cannot start: {exc.message}") from None
    except OSError as exc:
        raise CliError(f"cannot start: {exc}") from None
    except SettingsError as exc:  # authentication or TLS misconfigured
        raise CliError(f"cannot start: {exc}", EXIT_USAGE) from None


async def _serve(which: Which, runs_settings: RunsSettings, exec_settings: ExecutionSettings) -> None:
    started: list[asyncio.Task[None]] = []
    try:
        if which in (Which.RUNS, Which.ALL):
            from runs_service.server import run_server as run_runs_server

            started.append(await _start("RunsService", runs_settings.listen_address, run_runs_server(runs_settings)))
        if which in (Which.EXECUTION, Which.ALL):
            from execution_service.server import run_server as run_execution_server

            task = await _start("ExecutionService", exec_settings.listen_address, run_execution_server(exec_settings))
            started.append(task)
            output.print_line(f"  recording runs to RunsService at {exec_settings.runs_service_target}")
        output.print_line("Ctrl-C stops; try `agentrun agents list`")
        await asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await _stop_all(started)


async def _start(name: str, listen_address: str, server: Awaitable[None]) -> asyncio.Task[None]:
    """Starts `server` as a task and returns once it reports SERVING (or raises what made it fail)."""
    task: asyncio.Task[None] = asyncio.ensure_future(server)
    target = client_target(listen_address)
    try:
        await asyncio.wait_for(_until_serving(target, task), STARTUP_TIMEOUT_S)
    except TimeoutError:
        task.cancel()
        raise CliError(f"{name} did not report SERVING at {target} within {STARTUP_TIMEOUT_S:.0f} s") from None
    except BaseException:
        task.cancel()
        raise
    output.print_line(f"{name} listening on {listen_address}")
    return task


async def _until_serving(target: str, task: asyncio.Task[None]) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            if task.done():
                task.result()  # raises what stopped it
                raise CliError(f"the server for {target} stopped while starting")
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            await asyncio.sleep(0.1)


async def _stop_all(tasks: list[asyncio.Task[None]]) -> None:
    """Stops the servers last-started first (ExecutionService drains before RunsService goes away)."""
    for task in reversed(tasks):
        if not task.done():
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
