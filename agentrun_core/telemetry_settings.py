"""The environment variables telemetry reads (docs/telemetry.md): the standard OTEL_* ones it decides with, and
AGENTRUN_CAPTURE_CONTENT / AGENTRUN_PROMETHEUS_*. The exporters, processors, sampler and resource read their own
OTEL_* variables (endpoint, headers, OTEL_BSP_*, ...) from the environment themselves."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from agentrun_core.settings import EnvSettings, setting

TRACE_EXPORTERS = frozenset({"otlp", "console"})
METRIC_EXPORTERS = frozenset({"otlp", "console", "prometheus"})


def _exporter_names(allowed: frozenset[str]) -> Any:
    """A comma-separated list of exporter names among `allowed` (and `none`, meaning none of them)."""

    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        names = [name.strip() for name in value.lower().split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed and name != "none"]
        if unknown:
            raise ValueError(f"names an unsupported exporter {unknown[0]!r} (use {', '.join(sorted(allowed))}, none)")
        return ("none",) if "none" in names else tuple(names)

    return BeforeValidator(parse)


# None: not set (the exporter then depends on whether an OTLP endpoint is); ("none",): explicitly none.
TraceExporters = Annotated[tuple[str, ...] | None, NoDecode, _exporter_names(TRACE_EXPORTERS)]
MetricExporters = Annotated[tuple[str, ...] | None, NoDecode, _exporter_names(METRIC_EXPORTERS)]


class TelemetrySettings(EnvSettings):
    sdk_disabled: bool = setting(False, "OTEL_SDK_DISABLED")
    traces_exporter: TraceExporters = setting(None, "OTEL_TRACES_EXPORTER")
    metrics_exporter: MetricExporters = setting(None, "OTEL_METRICS_EXPORTER")
    otlp_endpoint: str = setting("", "OTEL_EXPORTER_OTLP_ENDPOINT")
    otlp_traces_endpoint: str = setting("", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    otlp_metrics_endpoint: str = setting("", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
    otlp_protocol: str = setting("grpc", "OTEL_EXPORTER_OTLP_PROTOCOL")
    otlp_traces_protocol: str = setting("", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    otlp_metrics_protocol: str = setting("", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
    service_name: str = setting("", "OTEL_SERVICE_NAME")
    resource_attributes: str = setting("", "OTEL_RESOURCE_ATTRIBUTES")
    capture_content: bool = setting(False, "AGENTRUN_CAPTURE_CONTENT")
    # Set: serve a Prometheus scrape endpoint on this port (and add the prometheus metrics exporter).
    prometheus_port: int | None = setting(None, "AGENTRUN_PROMETHEUS_PORT", ge=0, le=65535)
    prometheus_host: str = setting("127.0.0.1", "AGENTRUN_PROMETHEUS_HOST")

    def exporters(self, configured: tuple[str, ...] | None, signal_endpoint: str) -> list[str]:
        """The exporters of one signal: as configured, else otlp when an OTLP endpoint is set, else none."""
        if configured is None:
            return ["otlp"] if (self.otlp_endpoint.strip() or signal_endpoint.strip()) else []
        return [] if configured == ("none",) else list(configured)

    def trace_exporters(self) -> list[str]:
        return self.exporters(self.traces_exporter, self.otlp_traces_endpoint)

    def metric_exporters(self) -> list[str]:
        names = self.exporters(self.metrics_exporter, self.otlp_metrics_endpoint)
        if self.prometheus_port is not None and "prometheus" not in names:
            names.append("prometheus")
        return names

    def protocol(self, signal: str) -> str:
        """The OTLP protocol of "traces" or "metrics" (the signal's own variable first)."""
        specific = self.otlp_traces_protocol if signal == "traces" else self.otlp_metrics_protocol
        return (specific or self.otlp_protocol or "grpc").strip()
