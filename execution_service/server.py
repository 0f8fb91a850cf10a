"""Builds and runs the ExecutionService: agents, MCP pool, model providers, outbox publisher, gRPC server."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import lru_cache

import grpc
from agentrun.execution.v1 import execution_service_pb2, execution_service_pb2_grpc

from agentrun_core.auth import SERVER_METADATA_OPTIONS, auth_interceptors
from agentrun_core.backoff import Backoff
from agentrun_core.data_dir import DATA_DIR_SETTING, usable_directory
from agentrun_core.grpc_decoding import add_servicer
from agentrun_core.serving import SERVER_ACCEPT_OPTIONS, HealthServicer, add_health_and_reflection, set_serving
from agentrun_core.stream_closing import StreamsEndInTheirTask
from agentrun_core.telemetry import EXECUTION_SERVICE_NAME, Telemetry
from agentrun_core.tls import add_port, aio_channel
from execution_service.agents.registry import AgentRegistry
from execution_service.api.limits import CallLimits
from execution_service.api.servicer import ExecutionServicer
from execution_service.config import ExecutionSettings
from execution_service.engine.manager import ManagerLimits, ProviderFactory, RunManager
from execution_service.history.stored_runs import StoredRuns
from execution_service.model.base import ModelProvider
from execution_service.model.registry import ModelSettings, build_provider
from execution_service.model.retry import ModelRetryPolicy
from execution_service.publish.known_runs import KnownRuns
from execution_service.publish.metrics import register_publisher_metrics
from execution_service.publish.outbox import Outbox
from execution_service.publish.publisher import OutboxPublisher
from execution_service.publish.recovery import recover_interrupted
from execution_service.publish.step_journal import StepJournal, journal_directory
from execution_service.redaction import RedactionRules, Redactor, rules_with_extras
from execution_service.schedules.scheduler import Scheduler, SchedulerSettings, TickSource
from execution_service.schedules.service import Schedules
from execution_service.schedules.store import ScheduleStore
from execution_service.tools.connection import ConnectionTimeouts
from execution_service.tools.mcp_config import load_mcp_config
from execution_service.tools.pool import McpToolPool

log = logging.getLogger(__name__)

SERVICE_NAME = execution_service_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name


def model_settings(settings: ExecutionSettings) -> ModelSettings:
    return ModelSettings(
        gemini_api_key=settings.gemini_api_key or None,
        gemini_base_url=settings.gemini_base_url or None,
        stream=settings.model_stream,
        timeout_s=settings.model_timeout_s,
        retry=ModelRetryPolicy(
            max_attempts=settings.model_retry_attempts,
            backoff=Backoff(
                initial_s=settings.model_retry_initial_delay_s,
                multiplier=2.0,
                max_s=settings.model_retry_max_delay_s,
                jitter=1.0,
            ),
        ),
        test_model_latency_s=settings.test_model_latency_s,
    )


def manager_limits(settings: ExecutionSettings) -> ManagerLimits:
    """The run manager's limits from the service's settings (both modes)."""
    return ManagerLimits(
        max_task_bytes=settings.max_task_bytes,
        max_concurrent_runs=settings.max_concurrent_runs,
        max_queued_runs=settings.max_queued_runs,
        queue_timeout_s=settings.queue_timeout_s,
        max_parallel_tools=settings.max_parallel_tools,
    )


def provider_factory(settings: ExecutionSettings) -> ProviderFactory:
    resolved = model_settings(settings)

    @lru_cache(maxsize=64)
    def providers(model: str) -> tuple[ModelProvider, str]:
        return build_provider(model, resolved)

    return providers


def redacted_servers_down(tools: McpToolPool, redactor: Redactor) -> Callable[[], dict[str, str]]:
    """The MCP servers that are down, their last errors (a server's stderr may hold a password) redacted."""
    return lambda: {name: redactor.scrub_text(error) for name, error in tools.servers_down().items()}


def redaction_rules(settings: ExecutionSettings) -> RedactionRules:
    return rules_with_extras(
        enabled=settings.redaction_enabled,
        max_result_bytes=settings.max_tool_result_bytes,
        extra_keys=settings.redact_keys,
        extra_patterns=settings.redact_patterns,
    )


def runs_call_metadata(settings: ExecutionSettings) -> Callable[[], Sequence[tuple[str, str]]]:
    """The metadata of every RecordRun call: this service's own bearer token (role service), when configured."""
    metadata: tuple[tuple[str, str], ...] = (
        (("authorization", f"Bearer {settings.runs_service_token}"),) if settings.runs_service_token else ()
    )
    return lambda: metadata


@dataclass
class RunningExecutionServer:
    server: grpc.aio.Server
    port: int
    health: HealthServicer
    manager: RunManager
    # The embedded mode's outbox sender (None in the durable mode, which publishes from each run's workflow).
    publisher: OutboxPublisher | None
    agents: AgentRegistry
    tools: McpToolPool
    _resources: AsyncExitStack
    telemetry: Telemetry | None = None
    # None when AGENTRUN_SCHEDULER is off.
    scheduler: TickSource | None = None

    async def flush_outbox(self, timeout_s: float) -> bool:
        """Waits until the outbox delivered every record (False on timeout). The durable mode has no outbox: a run's
        end is published before its RunFinished (or retried by its workflow), so there is nothing to wait for."""
        return True if self.publisher is None else await self.publisher.flush(timeout_s)

    async def stop(self, grace_s: float = 5.0) -> None:
        """NOT_SERVING, stop accepting calls and ticks, let runs finish (then interrupt them), drain the outbox
        briefly."""
        log.info(
            "draining: NOT_SERVING, new runs refused; live runs have the grace to finish",
            extra={"grace_s": grace_s, "live_runs": self.manager.live_count},
        )
        await self.health.enter_graceful_shutdown()
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.manager.shutdown(grace_s)
        await self.server.stop(min(grace_s, 5.0))
        await self._resources.aclose()


async def start_server(
    settings: ExecutionSettings,
    *,
    interceptors: list[grpc.aio.ServerInterceptor] | None = None,
    runs_channel: grpc.aio.Channel | None = None,
    telemetry: Telemetry | None = None,
) -> RunningExecutionServer:
    """`telemetry`: tracer and meter providers (tests pass in-memory exporters); by default built from the OTEL_*
    environment variables and shut down on stop. A telemetry passed in is flushed on stop, not shut down. A
    `runs_channel` passed in is used as is (add `telemetry.client_interceptors()` to it to trace RecordRun)."""
    security = auth_interceptors(settings.auth, service="ExecutionService")
    settings.tls.credentials()  # fail early when TLS is misconfigured
    if not settings.runs_service_token:
        log.warning(
            "AGENTRUN_RUNS_SERVICE_TOKEN is not set: runs are published to RunsService without credentials "
            "(fine only when RunsService runs with AGENTRUN_AUTH=off)"
        )
    owns_telemetry = telemetry is None
    telemetry = telemetry or Telemetry.from_env(EXECUTION_SERVICE_NAME)
    resources = AsyncExitStack()
    # Registered first, so it runs last: the spans of the final RecordRun calls are exported too.
    resources.push_async_callback(telemetry.aclose if owns_telemetry else telemetry.aflush)
    try:
        servers = load_mcp_config(settings.mcp_config) if settings.mcp_config.exists() else {}
        if not settings.mcp_config.exists():
            log.warning("no MCP config: agents get no tools", extra={"path": str(settings.mcp_config)})
        agents = AgentRegistry(settings.agents_dir, settings.default_model, known_servers=servers.keys())
        agents.load()  # logs each broken agent file
        tools = McpToolPool(
            servers,
            max_message_bytes=settings.mcp_max_message_bytes,
            timeouts=ConnectionTimeouts(connect_s=settings.mcp_connect_timeout_s),
        )
        resources.push_async_callback(tools.aclose)
        if runs_channel is None:
            runs_channel = aio_channel(
                settings.runs_service_target,
                settings.runs_service_tls,
                prefix="AGENTRUN_RUNS_SERVICE_TLS",
                interceptors=telemetry.client_interceptors(),  # RecordRuns spans, trace context to RunsService
            )
            resources.push_async_callback(runs_channel.close)
        publisher: OutboxPublisher | None = None
        schedule_store = ScheduleStore(runs_channel, runs_call_metadata(settings))
        if settings.durable:
            from execution_service.durable.service import start_durable  # DBOS is imported in this mode only
            from execution_service.schedules import durable as durable_schedules  # its workflow, before launch

            durable = await start_durable(settings, agents, tools, runs_channel, telemetry, resources)
            durable_schedules.bind_tick_runner(
                agents, durable.start_scheduled, schedule_store, settings.resolved_replica_id
            )
            manager: RunManager = durable
        else:
            publisher, manager = await _embedded_manager(settings, agents, tools, runs_channel, telemetry, resources)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 0),
                *SERVER_METADATA_OPTIONS,
                *SERVER_ACCEPT_OPTIONS,
            ],
            # Caller interceptors (tracing) run first, so refused calls are traced too; authentication is innermost.
            interceptors=[StreamsEndInTheirTask(), *telemetry.server_interceptors(), *(interceptors or []), *security],
        )
        limits = CallLimits(
            max_streams_per_user=settings.max_streams_per_user,
            rate_per_minute=settings.rate_limit_per_minute,
            burst=settings.rate_limit_burst,
        )
        add_servicer(
            execution_service_pb2_grpc.add_ExecutionServiceServicer_to_server,
            ExecutionServicer(
                manager,
                agents,
                limits,
                Schedules(agents, schedule_store),
                servers_down=redacted_servers_down(tools, Redactor(redaction_rules(settings))),
            ),
            server,
        )
        health_servicer = add_health_and_reflection(server, SERVICE_NAME, reflection=settings.reflection)
        port = add_port(server, settings.listen_address, settings.tls, service="ExecutionService")
        await server.start()
        await set_serving(health_servicer, SERVICE_NAME)
        scheduler: TickSource | None = None
        if settings.scheduler_enabled:
            scheduler_settings = SchedulerSettings(
                replica=settings.resolved_replica_id,
                grace_s=settings.scheduler_grace_s,
                refresh_s=settings.scheduler_refresh_s,
            )
            if settings.durable:
                from execution_service.schedules.durable import DurableSchedules

                scheduler = DurableSchedules(agents, schedule_store, scheduler_settings)
            else:
                scheduler = Scheduler(agents, manager.start, schedule_store, scheduler_settings)
            scheduler.start()
            resources.push_async_callback(scheduler.stop)
        log.info(
            "execution service serving",
            extra={
                "address": settings.listen_address,
                "port": port,
                "agents": [a.name for a in agents.agents()],
                "mcp_servers": sorted(servers),
                "runs_service": settings.runs_service_target,
            },
        )
        return RunningExecutionServer(
            server, port, health_servicer, manager, publisher, agents, tools, resources, telemetry, scheduler
        )
    except BaseException:
        await resources.aclose()
        raise


async def _embedded_manager(
    settings: ExecutionSettings,
    agents: AgentRegistry,
    tools: McpToolPool,
    runs_channel: grpc.aio.Channel,
    telemetry: Telemetry,
    resources: AsyncExitStack,
) -> tuple[OutboxPublisher, RunManager]:
    """The embedded mode: runs in this process, published through the local SQLite outbox."""

    outbox_directory = settings.resolved_outbox_path.parent
    usable_directory(outbox_directory, "AGENTRUN_OUTBOX_PATH" if settings.outbox_path else DATA_DIR_SETTING)
    outbox = await Outbox.open(settings.resolved_outbox_path)
    resources.push_async_callback(outbox.close)
    journal = StepJournal(journal_directory(settings.resolved_outbox_path))
    resources.callback(journal.close)
    recovered = await recover_interrupted(outbox, journal)
    if recovered:
        log.warning("runs interrupted by the previous stop will be published as INTERRUPTED", extra={"runs": recovered})
    publisher = OutboxPublisher(
        outbox,
        runs_channel,
        call_metadata=runs_call_metadata(settings),
        journal=journal,
        batch_max_records=settings.outbox_batch_records,
        batch_max_bytes=settings.outbox_batch_bytes,
    )
    publisher.start()
    resources.push_async_callback(publisher.stop, 5.0)
    register_publisher_metrics(telemetry.meter("agentrun.outbox"), publisher, outbox)

    known_runs = KnownRuns(outbox, runs_channel, runs_call_metadata(settings))
    manager = RunManager(
        agents,
        tools,
        provider_factory(settings),
        publisher,
        run_exists=known_runs.exists,
        finished_run=known_runs.finished,
        stored_runs=StoredRuns(runs_channel, runs_call_metadata(settings)),
        redactor=Redactor(redaction_rules(settings)),
        limits=manager_limits(settings),
        telemetry=telemetry,
    )
    return publisher, manager
