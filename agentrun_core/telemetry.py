"""OpenTelemetry for both services: one `Telemetry` per service holding its TracerProvider and MeterProvider.

Built only from the standard OTEL_* environment variables (`Telemetry.from_env`): with none set, no exporter is
created and no connection is attempted; spans still get real trace ids (so a run's stored trace_id is its trace's
id) but go nowhere. Nothing here touches the global OpenTelemetry providers or patches gRPC: the providers are
passed explicitly to the gRPC interceptors and to the engine's instrumentation.

- Traces: OTEL_TRACES_EXPORTER (otlp, console, none; comma-separated), defaulting to otlp only when an OTLP endpoint
  (OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, else none.
- Metrics: OTEL_METRICS_EXPORTER likewise (otlp, console, prometheus, none; endpoint OTEL_EXPORTER_OTLP_METRICS_...).
  AGENTRUN_PROMETHEUS_PORT (and AGENTRUN_PROMETHEUS_HOST, default 127.0.0.1) serves a Prometheus scrape endpoint.
- OTEL_SDK_DISABLED=true: no-op providers (no spans, no metrics; trace ids become random).
- The exporters, processors, sampler and resource read their own OTEL_* variables (endpoint, headers, protocol,
  OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL, OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME).
- AGENTRUN_CAPTURE_CONTENT=true records prompts, tool arguments and tool results on spans (off by default).

Tests and benchmarks build one directly: `Telemetry.with_exporters(...)` (e.g. InMemorySpanExporter,
InMemoryMetricReader) or `Telemetry.disabled()`. `set_enabled(False)` switches the engine's per-run
instrumentation off process-wide at run time (bench/engine.py measures with it on and off). See docs/telemetry.md.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agentrun_core.settings import SettingsError
from agentrun_core.telemetry_settings import TelemetrySettings

log = logging.getLogger(__name__)

EXECUTION_SERVICE_NAME = "agentrun-execution-service"
RUNS_SERVICE_NAME = "agentrun-runs-service"

_PROPAGATOR = TraceContextTextMapPropagator()
_enabled = True


def set_enabled(on: bool) -> None:
    """Switches run instrumentation (invoke_agent / generate_content / execute_tool spans and run, model and tool
    metrics) on or off for runs started from now on, process-wide. On by default. The gRPC interceptors are not
    affected (build the service with `Telemetry.disabled()` to drop them too)."""
    global _enabled
    _enabled = on


def is_enabled() -> bool:
    return _enabled


# --- W3C trace context as text (for the outbox and MCP requests) -----------------------------------------------------


def current_traceparent() -> str:
    """The W3C traceparent of the current span, or "" when there is no valid span (e.g. telemetry disabled)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent", "")


def current_trace_carrier() -> dict[str, str]:
    """traceparent (and tracestate) of the current span, for a request's metadata; empty without a valid span."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier


@contextmanager
def trace_context(traceparent: str) -> Iterator[None]:
    """Makes the span named by `traceparent` the current parent inside the block (nothing changes when empty)."""
    if not traceparent:
        yield
        return
    token = otel_context.attach(_PROPAGATOR.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


# --- settings --------------------------------------------------------------------------------------------------------


def _resource(settings: TelemetrySettings, default_service_name: str) -> Resource:
    attributes: dict[str, str] = {"service.namespace": "agentrun"}
    explicit = settings.service_name.strip()
    in_resource_attrs = "service.name=" in settings.resource_attributes.replace(" ", "")
    if explicit:
        attributes["service.name"] = explicit
    elif not in_resource_attrs:
        attributes["service.name"] = default_service_name
    return Resource.create(attributes)


def _otlp_span_exporter(settings: TelemetrySettings) -> SpanExporter:
    protocol = settings.protocol("traces")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "http/protobuf":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                OTLPSpanExporter as HttpSpanExporter,
            )
        except ImportError:
            raise SettingsError(
                "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf needs opentelemetry-exporter-otlp-proto-http, which is "
                "not installed; use grpc"
            ) from None
        return HttpSpanExporter()
    raise SettingsError(f"OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol {protocol!r} (use grpc)")


def _otlp_metric_reader(settings: TelemetrySettings) -> MetricReader:
    protocol = settings.protocol("metrics")
    if protocol != "grpc":
        raise SettingsError(f"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: unsupported protocol {protocol!r} (use grpc)")
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    return PeriodicExportingMetricReader(OTLPMetricExporter())


# --- Prometheus: one HTTP server per port per process, shared by the services of `agentrun serve all` --------------

_prometheus_lock = threading.Lock()
_prometheus_servers: dict[int, tuple[Any, int]] = {}  # port -> (server, users)


def _prometheus_reader(settings: TelemetrySettings) -> tuple[MetricReader, int]:
    port = 9464 if settings.prometheus_port is None else settings.prometheus_port
    host = settings.prometheus_host.strip() or "127.0.0.1"
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import start_http_server

    reader = PrometheusMetricReader()
    with _prometheus_lock:
        entry = _prometheus_servers.get(port)
        if entry is None:
            server, _thread = start_http_server(port, addr=host)
            entry = (server, 0)
            log.info("prometheus metrics served", extra={"address": f"http://{host}:{port}/metrics"})
        _prometheus_servers[port] = (entry[0], entry[1] + 1)
    return reader, port


def _release_prometheus(port: int) -> None:
    with _prometheus_lock:
        entry = _prometheus_servers.get(port)
        if entry is None:
            return
        server, users = entry
        if users > 1:
            _prometheus_servers[port] = (server, users - 1)
            return
        del _prometheus_servers[port]
    server.shutdown()
    server.server_close()


# --- gRPC: response-streaming behaviours as async generators --------------------------------------------------------


class _StreamingAsGenerators(grpc.aio.ServerInterceptor):
    """The OpenTelemetry aio server interceptor iterates a response-streaming behaviour with `async for`, while
    grpc.aio also accepts a coroutine function there (one that writes with context.write or only aborts, like the
    authentication interceptor's refusals). Placed right after it, this turns such behaviours into async generators.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None or not handler.response_streaming:
            return handler
        behavior = handler.unary_stream or handler.stream_stream
        if behavior is None or inspect.isasyncgenfunction(behavior):
            return handler

        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            result = behavior(request, context)
            if hasattr(result, "__aiter__"):
                async for item in result:
                    yield item
            else:
                await result

        make = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
        return make(
            stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# --- Telemetry -------------------------------------------------------------------------------------------------------


class Telemetry:
    """A service's tracer and meter providers, its content-capture setting, and how to flush and stop them."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        *,
        capture_content: bool = False,
        exporters: Sequence[str] = (),
        prometheus_port: int | None = None,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.capture_content = capture_content
        # Names of the exporters / readers this object created ("otlp-traces", "memory-metrics", ...).
        self.exporters: tuple[str, ...] = tuple(exporters)
        self._prometheus_port = prometheus_port
        self._closed = False

    # --- construction ------------------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, service_name: str, env: Mapping[str, str] | None = None) -> Telemetry:
        """Providers from the standard OTEL_* variables (see the module docstring). Raises SettingsError."""
        settings = TelemetrySettings.from_env(env)
        capture = settings.capture_content
        if settings.sdk_disabled:
            log.info("OpenTelemetry disabled (OTEL_SDK_DISABLED)", extra={"service": service_name})
            return cls.disabled()
        traces = settings.trace_exporters()
        metric_names = settings.metric_exporters()
        span_exporters: list[SpanExporter] = []
        readers: list[MetricReader] = []
        created: list[str] = []
        prometheus_port: int | None = None
        for name in traces:
            span_exporters.append(_otlp_span_exporter(settings) if name == "otlp" else ConsoleSpanExporter())
            created.append(f"{name}-traces")
        for name in metric_names:
            if name == "otlp":
                readers.append(_otlp_metric_reader(settings))
            elif name == "console":
                readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
            else:
                reader, prometheus_port = _prometheus_reader(settings)
                readers.append(reader)
            created.append(f"{name}-metrics")
        resource = _resource(settings, service_name)
        # Shut down by the service's stop (agentrun_cli.services.launch always stops), not by atexit handlers.
        tracer_provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
        for exporter in span_exporters:
            tracer_provider.add_span_processor(BatchSpanProcessor(exporter))
        meter_provider = SdkMeterProvider(resource=resource, metric_readers=readers, shutdown_on_exit=False)
        log.info(
            "telemetry configured",
            extra={
                "service": resource.attributes.get("service.name", service_name),
                "exporters": created or ["none"],
                "capture_content": capture,
            },
        )
        return cls(
            tracer_provider,
            meter_provider,
            capture_content=capture,
            exporters=created,
            prometheus_port=prometheus_port,
        )

    @classmethod
    def with_exporters(
        cls,
        service_name: str,
        *,
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
        capture_content: bool = False,
    ) -> Telemetry:
        """In-process providers exporting synchronously to the given exporters / readers (tests, benchmarks)."""
        resource = Resource.create({"service.name": service_name, "service.namespace": "agentrun"})
        tracer_provider = SdkTracerProvider(resource=resource, shutdown_on_exit=False)
        for exporter in span_exporters:
            tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        meter_provider = SdkMeterProvider(
            resource=resource, metric_readers=list(metric_readers), shutdown_on_exit=False
        )
        names = [f"{type(e).__name__}-traces" for e in span_exporters]
        names += [f"{type(r).__name__}-metrics" for r in metric_readers]
        return cls(tracer_provider, meter_provider, capture_content=capture_content, exporters=names)

    @classmethod
    def disabled(cls) -> Telemetry:
        """No-op providers: no spans, no metrics, no gRPC interceptors (the cheapest setting, e.g. for bench/)."""
        return cls(trace.NoOpTracerProvider(), metrics.NoOpMeterProvider())

    # --- use ---------------------------------------------------------------------------------------------------

    @property
    def enabled(self) -> bool:
        return not isinstance(self.tracer_provider, trace.NoOpTracerProvider)

    def tracer(self, name: str) -> trace.Tracer:
        return self.tracer_provider.get_tracer(name)

    def meter(self, name: str) -> metrics.Meter:
        return self.meter_provider.get_meter(name)

    def server_interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """The tracing interceptor for a grpc.aio server (health checks are not traced); none when disabled."""
        if not self.enabled:
            return []
        from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

        tracing = aio_server_interceptor(
            tracer_provider=self.tracer_provider, filter_=filters.negate(filters.health_check())
        )
        return [tracing, _StreamingAsGenerators()]

    def client_interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """Tracing interceptors for a grpc.aio channel (they also send the trace context); none when disabled."""
        if not self.enabled:
            return []
        from opentelemetry.instrumentation.grpc import aio_client_interceptors

        return list(aio_client_interceptors(tracer_provider=self.tracer_provider))

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def force_flush(self, timeout_ms: int = 5000) -> None:
        if isinstance(self.tracer_provider, SdkTracerProvider):
            self.tracer_provider.force_flush(timeout_ms)
        if isinstance(self.meter_provider, SdkMeterProvider):
            self.meter_provider.force_flush(timeout_ms)

    def shutdown(self) -> None:
        """Flushes and stops exporters and readers. Idempotent. Blocks (exporters may send): see `aclose`."""
        if self._closed:
            return
        self._closed = True
        try:
            if isinstance(self.tracer_provider, SdkTracerProvider):
                self.tracer_provider.shutdown()
            if isinstance(self.meter_provider, SdkMeterProvider):
                self.meter_provider.shutdown()
        finally:
            if self._prometheus_port is not None:
                _release_prometheus(self._prometheus_port)

    async def aflush(self, timeout_ms: int = 5000) -> None:
        await asyncio.to_thread(self.force_flush, timeout_ms)

    async def aclose(self) -> None:
        """`shutdown` off the event loop."""
        await asyncio.to_thread(self.shutdown)
