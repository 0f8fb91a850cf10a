"""Telemetry built from the OTEL_* environment: nothing configured means no exporter and no connection."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path

import pytest
from agentrun.runs.v1 import run_pb2
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider

from agentrun_core.settings import SettingsError
from agentrun_core.telemetry import Telemetry, current_traceparent, trace_context
from tests.support.stack import agent_source, free_port, running_stack


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_") or name in ("AGENTRUN_CAPTURE_CONTENT", "AGENTRUN_PROMETHEUS_PORT"):
            monkeypatch.delenv(name)


def _forbid_exporters(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("no exporter may be created when nothing is configured")

    from opentelemetry.exporter.otlp.proto.grpc import metric_exporter, trace_exporter

    monkeypatch.setattr(trace_exporter.OTLPSpanExporter, "__init__", refuse)
    monkeypatch.setattr(metric_exporter.OTLPMetricExporter, "__init__", refuse)


def test_nothing_configured_creates_no_exporter_but_real_trace_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_exporters(monkeypatch)
    telemetry = Telemetry.from_env("svc", env={})
    assert telemetry.exporters == () and telemetry.enabled and not telemetry.capture_content
    assert isinstance(telemetry.tracer_provider, SdkTracerProvider)
    assert telemetry.tracer_provider._active_span_processor._span_processors == ()
    assert isinstance(telemetry.meter_provider, SdkMeterProvider)
    assert not telemetry.meter_provider._metric_readers
    with telemetry.tracer("t").start_as_current_span("s") as span:
        assert span.get_span_context().is_valid
        assert current_traceparent().startswith(f"00-{span.get_span_context().trace_id:032x}-")
    telemetry.shutdown()


def test_otlp_endpoint_enables_otlp_export_and_service_name_comes_from_the_environment() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_SERVICE_NAME": "custom-name",
        "AGENTRUN_CAPTURE_CONTENT": "true",
    }
    telemetry = Telemetry.from_env("svc", env=env)
    assert telemetry.exporters == ("otlp-traces",) and telemetry.capture_content
    assert isinstance(telemetry.tracer_provider, SdkTracerProvider)
    assert telemetry.tracer_provider.resource.attributes["service.name"] == "custom-name"
    started = time.monotonic()
    telemetry.shutdown()  # nothing was exported: no connection attempt, so this is quick
    assert time.monotonic() - started < 5


def test_exporter_choices_and_errors() -> None:
    console = Telemetry.from_env("svc", env={"OTEL_TRACES_EXPORTER": "console", "OTEL_METRICS_EXPORTER": "none"})
    assert console.exporters == ("console-traces",)
    console.shutdown()
    assert Telemetry.from_env("svc", env={"OTEL_TRACES_EXPORTER": "none"}).exporters == ()
    with pytest.raises(SettingsError, match="OTEL_TRACES_EXPORTER"):
        Telemetry.from_env("svc", env={"OTEL_TRACES_EXPORTER": "zipkin"})
    with pytest.raises(SettingsError, match="AGENTRUN_CAPTURE_CONTENT"):
        Telemetry.from_env("svc", env={"AGENTRUN_CAPTURE_CONTENT": "maybe"})
    disabled = Telemetry.from_env("svc", env={"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"})
    assert not disabled.enabled and disabled.exporters == ()
    assert disabled.server_interceptors() == [] and disabled.client_interceptors() == []


def test_prometheus_endpoint_serves_the_metrics() -> None:
    port = free_port()
    telemetry = Telemetry.from_env("svc", env={"AGENTRUN_PROMETHEUS_PORT": str(port)})
    try:
        assert telemetry.exporters == ("prometheus-metrics",)
        telemetry.meter("m").create_counter("agentrun.test.things").add(3, {"kind": "x"})
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        assert 'agentrun_test_things_total{kind="x"' in body
    finally:
        telemetry.shutdown()


def test_trace_context_reattaches_a_stored_traceparent() -> None:
    telemetry = Telemetry.with_exporters("svc")
    with telemetry.tracer("t").start_as_current_span("run") as run:
        stored = current_traceparent()
    assert current_traceparent() == ""
    with trace_context(stored), telemetry.tracer("t").start_as_current_span("send") as send:
        assert send.get_span_context().trace_id == run.get_span_context().trace_id
        assert send.parent is not None and send.parent.span_id == run.get_span_context().span_id  # type: ignore[attr-defined]
    with trace_context(""):
        assert current_traceparent() == ""


async def test_services_without_otel_settings_export_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_exporters(monkeypatch)
    async with running_stack(tmp_path, {"plain": agent_source()}) as stack:
        assert stack.execution.telemetry is not None and stack.execution.telemetry.exporters == ()
        assert stack.runs is not None and stack.runs.telemetry is not None
        assert stack.runs.telemetry.exporters == ()
        events = await stack.execute(agent_name="plain", task="hello")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert len(events[0].run_started.trace_id) == 32


async def test_disabled_telemetry_still_gives_runs_a_trace_id(tmp_path: Path) -> None:
    disabled = Telemetry.disabled()
    async with running_stack(tmp_path, {"plain": agent_source()}, telemetry=disabled) as stack:
        events = await stack.execute(agent_name="plain", task="hello")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        trace_id = events[0].run_started.trace_id
        assert len(trace_id) == 32 and int(trace_id, 16) != 0
        stored = await stack.stored_run(events[0].run_started.run_id)
        assert stored.trace_id == trace_id
