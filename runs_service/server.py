"""Builds and runs the RunsService gRPC server: servicer, health, reflection, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import shlex
from dataclasses import dataclass

import grpc
from agentrun.runs.v1 import runs_service_pb2, runs_service_pb2_grpc
from sqlalchemy.ext.asyncio import AsyncEngine

from agentrun_core.auth import SERVER_METADATA_OPTIONS, auth_interceptors
from agentrun_core.database_problems import masked_url
from agentrun_core.grpc_decoding import add_servicer
from agentrun_core.serving import SERVER_ACCEPT_OPTIONS, HealthServicer, add_health_and_reflection, set_serving
from agentrun_core.settings import SettingsError
from agentrun_core.stream_closing import StreamsEndInTheirTask
from agentrun_core.telemetry import RUNS_SERVICE_NAME, Telemetry
from agentrun_core.tls import add_port
from runs_service.api.servicer import RunsServicer
from runs_service.config import RunsSettings
from runs_service.errors import InvalidFilter
from runs_service.purger import RetentionPurger
from runs_service.storage.engine import create_engine_for
from runs_service.storage.migrate import MIGRATE_COMMAND, check_schema, ensure_database, upgrade
from runs_service.storage.repository import RunRepository

log = logging.getLogger(__name__)

SERVICE_NAME = runs_service_pb2.DESCRIPTOR.services_by_name["RunsService"].full_name


@dataclass
class RunningRunsServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    engine: AsyncEngine
    repository: RunRepository
    telemetry: Telemetry | None = None
    owns_telemetry: bool = False  # built from the environment by start_server: shut down on stop (else flushed)
    purger: RetentionPurger | None = None  # when a retention period is set

    async def stop(self, grace_s: float = 5.0) -> None:
        await self.health.enter_graceful_shutdown()
        if self.purger is not None:
            await self.purger.stop()
        await self.server.stop(grace_s)
        await self.engine.dispose()
        if self.telemetry is not None:
            await (self.telemetry.aclose() if self.owns_telemetry else self.telemetry.aflush())


def migrate_command(settings: RunsSettings) -> str:
    """The command that migrates the database `settings` point at, as it can be typed: `agentrun-runs-service
    migrate` with the service's --database-url (its password masked as ***) or --data-dir (absolute, so it works
    from any directory). Without them it would migrate the default data/runs.db instead."""
    if settings.database_url:
        return f"{MIGRATE_COMMAND} --database-url {shlex.quote(masked_url(settings.database_url))}"
    return f"{MIGRATE_COMMAND} --data-dir {shlex.quote(str(settings.data_dir.absolute()))}"


async def _check_schema(settings: RunsSettings, url: str) -> None:
    """check_schema, whose SchemaOutdated names the migrate command with this service's database flags."""
    await asyncio.to_thread(check_schema, url, migrate_command(settings))


async def start_server(
    settings: RunsSettings,
    *,
    interceptors: list[grpc.aio.ServerInterceptor] | None = None,
    telemetry: Telemetry | None = None,
) -> RunningRunsServer:
    """Creates the database when asked (create_database), checks the schema (or migrates when asked), then starts
    serving. Raises, each with a one-line message naming the database URL (password masked) and the fix:
    UnsupportedDatabaseURL (not SQLite or PostgreSQL), DatabaseUnusable (unreachable, missing, wrong password),
    SchemaOutdated (not migrated and migrate_on_start off); and a SettingsError (TokenConfigError, TlsConfigError)
    when authentication or TLS is misconfigured (checked first). `telemetry`: see
    execution_service.server.start_server (by default built from the OTEL_* environment variables)."""
    security = auth_interceptors(settings.auth, service="RunsService")
    settings.tls.credentials()  # fail before touching the database when TLS is misconfigured
    page_token_secret = settings.resolved_page_token_secret()
    url = settings.resolved_database_url()
    if settings.create_database:
        await asyncio.to_thread(ensure_database, url)
    if settings.migrate_on_start:
        await asyncio.to_thread(upgrade, url, "head")
    await _check_schema(settings, url)
    engine = create_engine_for(url)
    repository = RunRepository(engine, page_token_secret)
    await repository.ping()
    purger = None
    if settings.retention.deletes_anything:
        purger = RetentionPurger(
            repository,
            settings.retention,
            interval_s=settings.retention_interval_s,
            batch_size=settings.retention_batch_size,
            pause_s=settings.retention_pause_s,
            duty=settings.retention_duty,
        )
        try:
            purger.check()
        except InvalidFilter as exc:
            await engine.dispose()
            raise SettingsError(f"AGENTRUN_RETENTION_RULES: a rule is not a valid filter: {exc.message}") from None

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
        *SERVER_METADATA_OPTIONS,
        *SERVER_ACCEPT_OPTIONS,
    ]
    owns_telemetry = telemetry is None
    telemetry = telemetry or Telemetry.from_env(RUNS_SERVICE_NAME)
    # Tracing runs first, so refused calls are traced too; authentication is innermost.
    server = grpc.aio.server(
        options=options,
        interceptors=[StreamsEndInTheirTask(), *telemetry.server_interceptors(), *(interceptors or []), *security],
    )
    add_servicer(
        runs_service_pb2_grpc.add_RunsServiceServicer_to_server,
        RunsServicer(
            repository, max_record_bytes=settings.max_record_bytes, max_message_bytes=settings.max_message_bytes
        ),
        server,
    )
    health_servicer = add_health_and_reflection(server, SERVICE_NAME, reflection=settings.reflection)
    try:
        port = add_port(server, settings.listen_address, settings.tls, service="RunsService")
    except OSError:
        await engine.dispose()
        if owns_telemetry:
            await telemetry.aclose()
        raise
    await server.start()
    await set_serving(health_servicer, SERVICE_NAME)
    if purger is not None:
        purger.start()
    log.info(
        "runs service serving",
        extra={"address": settings.listen_address, "port": port, "database": masked_url(url)},
    )
    return RunningRunsServer(server, port, health_servicer, engine, repository, telemetry, owns_telemetry, purger)
