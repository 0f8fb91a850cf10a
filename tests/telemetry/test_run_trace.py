"""One ExecuteAgent run is one trace across both services, with GenAI semantic-convention spans and metrics whose
values equal what RunsService stored. Both services run in this process with in-memory exporters."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentrun.runs.v1 import run_pb2
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id

from agentrun_core.telemetry import EXECUTION_SERVICE_NAME, RUNS_SERVICE_NAME, Telemetry, set_enabled
from tests.fakes.gemini_server import FakeError, FakeFunctionCall, FakeResponse, FakeUsage
from tests.support.stack import agent_source, running_stack, wait_for

META_SERVER = Path(__file__).with_name("mcp_meta_server.py")
EXECUTE_AGENT = "/agentrun.execution.v1.ExecutionService/ExecuteAgent"
RECORD_RUN = "/agentrun.runs.v1.RunsService/RecordRuns"
TASK_WORD = "zebra-task-text"
SECRET = "sk-test-0123456789abcdef"
TASK = f"{TASK_WORD} add and check api_key={SECRET}"
SECRET_ARG = "boom-argument-text"


def telemetries(capture: bool = False) -> tuple[Telemetry, Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    execution = Telemetry.with_exporters(
        EXECUTION_SERVICE_NAME, span_exporters=[spans], metric_readers=[reader], capture_content=capture
    )
    runs = Telemetry.with_exporters(RUNS_SERVICE_NAME, span_exporters=[spans])
    return execution, runs, spans, reader


def script_two_turns(stack: Any) -> None:
    stack.gemini.add(
        FakeResponse(
            function_calls=[
                FakeFunctionCall("add", {"a": 2, "b": 3}, id="c1"),
                FakeFunctionCall("fail", {"message": SECRET_ARG}, id="c2"),
                FakeFunctionCall("trace_meta", {}, id="c3"),
            ],
            usage=FakeUsage(prompt=100, candidates=10, cached=40, thoughts=5, tool_use_prompt=7),
        ),
        FakeResponse(text="2 + 3 = 5", usage=FakeUsage(prompt=150, candidates=12, thoughts=3)),
    )


AGENTS = {"tracer": agent_source(model="googleai/gemini-2.5-flash", tools=["test/add", "test/fail", "meta/trace_meta"])}
MCP = {"meta": {"command": sys.executable, "args": [str(META_SERVER)]}}


def named(spans: Sequence[ReadableSpan], name: str, kind: SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and (kind is None or s.kind == kind)]


def only(spans: Sequence[ReadableSpan], name: str, kind: SpanKind | None = None) -> ReadableSpan:
    found = named(spans, name, kind)
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format_trace_id(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        point
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
    ]


def all_attribute_text(spans: Sequence[ReadableSpan]) -> str:
    return " ".join(str(v) for s in spans for v in (s.attributes or {}).values())


async def run_once(stack: Any, spans: InMemorySpanExporter) -> tuple[run_pb2.Run, list[ReadableSpan]]:
    events = await stack.execute(agent_name="tracer", task=TASK)
    finished = events[-1].run_finished
    assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
    stored = await stack.stored_run(events[0].run_started.run_id)
    assert stored.trace_id == events[0].run_started.trace_id

    def complete() -> bool:
        done = spans.get_finished_spans()
        servers = named(done, RECORD_RUN, SpanKind.SERVER)
        return (
            bool(named(done, EXECUTE_AGENT, SpanKind.SERVER))
            and len(servers) == len(named(done, RECORD_RUN, SpanKind.CLIENT)) >= 1
        )

    await wait_for(complete)
    return stored, list(spans.get_finished_spans())


async def test_one_run_is_one_trace_across_both_services(tmp_path: Path) -> None:
    execution, runs, exporter, reader = telemetries()
    async with running_stack(tmp_path, AGENTS, mcp_servers=MCP, telemetry=execution, runs_telemetry=runs) as stack:
        script_two_turns(stack)
        stored, spans = await run_once(stack, exporter)
        records = {p.attributes["agentrun.outbox.state"]: p.value for p in points(reader, "agentrun.outbox.records")}
        assert records == {"pending": 0, "parked": 0}  # delivered

    # The test's own GetRun read is a trace of its own; every other span belongs to the run's trace.
    run_spans = [s for s in spans if s.name != "/agentrun.runs.v1.RunsService/GetRun"]
    assert {trace_id(s) for s in run_spans} == {stored.trace_id}
    assert len(stored.trace_id) == 32

    server = only(run_spans, EXECUTE_AGENT, SpanKind.SERVER)
    agent = only(run_spans, "invoke_agent tracer", SpanKind.INTERNAL)
    assert parent_id(agent) == span_id(server)
    assert agent.attributes is not None
    assert agent.attributes["gen_ai.operation.name"] == "invoke_agent"
    assert agent.attributes["gen_ai.agent.name"] == "tracer"
    assert agent.attributes["gen_ai.agent.id"] == stored.agent_version
    assert agent.attributes["gen_ai.request.model"] == "gemini-2.5-flash"
    assert agent.attributes["agentrun.run.id"] == stored.id
    assert agent.attributes["agentrun.user"] == stored.user
    assert agent.attributes["gen_ai.usage.input_tokens"] == 257

    model_calls = named(run_spans, "generate_content gemini-2.5-flash", SpanKind.CLIENT)
    assert len(model_calls) == 2 and all(parent_id(s) == span_id(agent) for s in model_calls)
    first, second = sorted(model_calls, key=lambda s: s.start_time or 0)
    assert first.attributes is not None and second.attributes is not None
    assert first.attributes["gen_ai.operation.name"] == "generate_content"
    assert first.attributes["gen_ai.provider.name"] == "gcp.gemini"
    assert first.attributes["gen_ai.request.model"] == "gemini-2.5-flash"
    assert first.attributes["gen_ai.response.finish_reasons"] == ("STOP",)
    assert first.attributes["gen_ai.usage.input_tokens"] == 107  # prompt + tool-use prompt
    assert first.attributes["gen_ai.usage.output_tokens"] == 15  # candidates + thoughts
    assert first.attributes["gen_ai.usage.cache_read.input_tokens"] == 40
    assert first.attributes["gen_ai.usage.reasoning.output_tokens"] == 5
    assert second.attributes["gen_ai.usage.input_tokens"] == 150

    tools = {
        s.attributes["gen_ai.tool.name"]: s for s in run_spans if s.name.startswith("execute_tool ") and s.attributes
    }
    assert set(tools) == {"add", "fail", "trace_meta"}
    for call_id, (name, tool) in zip(("c1", "c2", "c3"), sorted(tools.items()), strict=True):
        assert parent_id(tool) == span_id(agent) and tool.kind == SpanKind.INTERNAL
        assert tool.attributes is not None
        assert tool.attributes["gen_ai.operation.name"] == "execute_tool"
        assert tool.attributes["gen_ai.tool.call.id"] == call_id, name
        assert tool.attributes["gen_ai.tool.type"] == "function"
    assert tools["add"].attributes is not None and tools["add"].attributes["agentrun.mcp.server"] == "test"
    assert tools["fail"].attributes is not None and tools["fail"].attributes["error.type"] == "TOOL_ERROR"
    assert tools["fail"].status.status_code == StatusCode.ERROR
    assert "error.type" not in (tools["add"].attributes or {})

    # The MCP request carried the execute_tool span's context in its _meta.
    meta_result = next(t for t in stored.tool_calls if t.name == "trace_meta").result
    assert meta_result.startswith(f"00-{stored.trace_id}-{format_span_id(span_id(tools['trace_meta']))}-")

    clients = named(run_spans, RECORD_RUN, SpanKind.CLIENT)
    assert clients and all(parent_id(c) == span_id(agent) for c in clients)
    servers = named(run_spans, RECORD_RUN, SpanKind.SERVER)
    assert sorted(parent_id(s) or 0 for s in servers) == sorted(span_id(c) for c in clients)
    assert {s.resource.attributes["service.name"] for s in servers} == {RUNS_SERVICE_NAME}
    assert server.resource.attributes["service.name"] == EXECUTION_SERVICE_NAME

    # Content capture is off by default.
    text = all_attribute_text(spans)
    assert TASK_WORD not in text and SECRET_ARG not in text and "2 + 3 = 5" not in text

    # Metrics equal what RunsService stored.
    usage = stored.token_usage
    by_type = {p.attributes["gen_ai.token.type"]: p for p in points(reader, "gen_ai.client.token.usage")}
    assert by_type["input"].sum == usage.input_tokens + usage.tool_use_prompt_tokens == 257
    assert by_type["output"].sum == usage.output_tokens + usage.thinking_tokens == 30
    assert by_type["input"].count == 2
    assert list(by_type["input"].explicit_bounds)[:3] == [1, 4, 16]
    assert by_type["input"].attributes["gen_ai.provider.name"] == "gcp.gemini"
    run_token_points = points(reader, "agentrun.token.usage")
    assert {p.attributes["gen_ai.token.type"]: p.sum for p in run_token_points} == {"input": 257, "output": 30}
    assert all(p.attributes["agentrun.success"] is True for p in run_token_points)
    (executions,) = points(reader, "agentrun.executions")
    assert executions.value == 1
    assert executions.attributes["agentrun.run.status"] == "COMPLETED"
    assert executions.attributes["agentrun.success"] is True
    assert executions.attributes["gen_ai.agent.name"] == "tracer"
    (duration,) = points(reader, "agentrun.execution.duration")
    assert abs(duration.sum - stored.duration.ToTimedelta().total_seconds()) < 1e-6
    operations = points(reader, "gen_ai.client.operation.duration")
    assert sum(p.count for p in operations) == 2
    assert list(operations[0].explicit_bounds)[:2] == [0.01, 0.02]
    tool_time = {p.attributes["gen_ai.tool.name"]: p for p in points(reader, "agentrun.tool.duration")}
    assert set(tool_time) == {"add", "fail", "trace_meta"}
    for call in stored.tool_calls:
        assert abs(tool_time[call.name].sum - call.duration.ToTimedelta().total_seconds()) < 1e-6
    (errors,) = points(reader, "agentrun.tool.errors")
    assert errors.value == 1 and errors.attributes["gen_ai.tool.name"] == "fail"
    assert errors.attributes["error.type"] == "TOOL_ERROR"
    sent = points(reader, "agentrun.outbox.sent")
    assert sent and sent[0].value >= 1


async def test_content_capture_records_prompt_arguments_and_results_when_enabled(tmp_path: Path) -> None:
    execution, runs, exporter, _reader = telemetries(capture=True)
    async with running_stack(tmp_path, AGENTS, mcp_servers=MCP, telemetry=execution, runs_telemetry=runs) as stack:
        script_two_turns(stack)
        _stored, spans = await run_once(stack, exporter)
    agent = only(spans, "invoke_agent tracer")
    assert agent.attributes is not None
    # Captured content is redacted like what is streamed and stored.
    assert TASK_WORD in str(agent.attributes["gen_ai.input.messages"])
    assert SECRET not in all_attribute_text(spans)
    assert "You are a test agent." in str(agent.attributes["gen_ai.system_instructions"])
    fail = only(spans, "execute_tool fail")
    assert fail.attributes is not None
    assert SECRET_ARG in str(fail.attributes["gen_ai.tool.call.arguments"])
    assert SECRET_ARG in str(fail.attributes["gen_ai.tool.call.result"])
    outputs = [
        str((s.attributes or {}).get("gen_ai.output.messages"))
        for s in named(spans, "generate_content gemini-2.5-flash")
    ]
    assert any("2 + 3 = 5" in o for o in outputs) and any('"name":"add"' in o for o in outputs)


async def test_failed_model_call_sets_error_type_on_its_span_and_the_run(tmp_path: Path) -> None:
    execution, runs, exporter, reader = telemetries()
    agents = {"broken": agent_source(model="googleai/gemini-2.5-flash")}
    async with running_stack(
        tmp_path, agents, telemetry=execution, runs_telemetry=runs, model_retry_attempts=1
    ) as stack:
        stack.gemini.add(FakeError(400, "bad request"))
        events = await stack.execute(agent_name="broken", task="fail please")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_FAILED
        stored = await stack.stored_run(events[0].run_started.run_id)
        await wait_for(lambda: bool(named(exporter.get_finished_spans(), EXECUTE_AGENT)))
    spans = exporter.get_finished_spans()
    model = only(spans, "generate_content gemini-2.5-flash")
    assert model.attributes is not None and model.attributes["error.type"] == "MODEL_REQUEST_INVALID"
    agent = only(spans, "invoke_agent broken")
    assert agent.attributes is not None and agent.attributes["error.type"] == stored.error.reason
    assert agent.status.status_code == StatusCode.ERROR
    (executions,) = points(reader, "agentrun.executions")
    assert executions.attributes["agentrun.success"] is False
    failed_ops = [p for p in points(reader, "gen_ai.client.operation.duration") if "error.type" in p.attributes]
    assert failed_ops and failed_ops[0].attributes["error.type"] == "MODEL_REQUEST_INVALID"


async def test_run_instrumentation_can_be_switched_off_at_run_time(tmp_path: Path) -> None:
    execution, runs, exporter, reader = telemetries()
    async with running_stack(tmp_path, {"plain": agent_source()}, telemetry=execution, runs_telemetry=runs) as stack:
        set_enabled(False)
        try:
            events = await stack.execute(agent_name="plain", task="hello")
        finally:
            set_enabled(True)
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert len(events[0].run_started.trace_id) == 32  # random: no run span
        await stack.stored_run(events[0].run_started.run_id)
        await wait_for(lambda: bool(named(exporter.get_finished_spans(), EXECUTE_AGENT)))
    names = {s.name for s in exporter.get_finished_spans()}
    assert not any(n.startswith(("invoke_agent", "generate_content", "execute_tool")) for n in names)
    assert EXECUTE_AGENT in names  # the gRPC interceptors stay
    assert not points(reader, "agentrun.executions")


async def test_captured_content_scrubs_a_secret_the_model_repeats_in_prose(tmp_path: Path) -> None:
    """The spans get the run's remembered secrets too: a password a tool returned (redacted by its key) and the
    model then quotes in its answer and in a later call's arguments appears in no span attribute."""
    password = "hunter2-not-a-real-password"
    execution, runs, exporter, _reader = telemetries(capture=True)
    agents = {"leaky": agent_source(model="gemini-2.5-flash", tools=["test/secret_config", "test/echo"])}
    async with running_stack(tmp_path, agents, telemetry=execution, runs_telemetry=runs) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("secret_config", {}, id="c1")]),
            FakeResponse(
                text=f"It logs in with {password}.",
                function_calls=[FakeFunctionCall("echo", {"text": password}, id="c2")],
            ),
            FakeResponse(text=f"The password is {password}."),
        )
        events = await stack.execute(agent_name="leaky", task="what is the billing password?")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        await stack.stored_run(events[0].run_started.run_id)
        await wait_for(lambda: bool(named(exporter.get_finished_spans(), "invoke_agent leaky")))
    spans = list(exporter.get_finished_spans())
    text = all_attribute_text(spans)
    assert "It logs in with [REDACTED]." in text and "The password is [REDACTED]." in text
    assert password not in text
