"""A durable run is traced like an embedded one (the run's span, a span per model call and per tool call, in the run's
trace), and a run resumed after its replica stopped continues the same trace: the resumed execution's span is another
`invoke_agent` span of the run's trace (`agentrun.resumed`), and the calls it replays from their checkpoints are
marked `agentrun.replayed` and record no metrics again. The replica is stopped and started again in this process,
each time with its own in-memory exporters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from agentrun_core.telemetry import EXECUTION_SERVICE_NAME, Telemetry
from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage, function_results_in
from tests.support.replicas import execution_database
from tests.support.stack import agent_source, running_stack
from tests.telemetry.test_run_trace import EXECUTE_AGENT, named, only, parent_id, points, span_id, trace_id

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

AGENTS = {"tracer": agent_source(model="gemini-2.5-flash", tools=["test/add", "test/sleep"])}
MODEL_SPAN = "generate_content gemini-2.5-flash"


def respond(body: dict[str, Any]) -> FakeResponse:
    """Turn 1 calls add, turn 2 sleep, turn 3 answers (decided by the results the request carries)."""
    results = function_results_in(body)
    usage = FakeUsage(prompt=100, candidates=10)
    if results == 0:
        return FakeResponse(function_calls=[FakeFunctionCall("add", {"a": 2, "b": 3}, id="c1")], usage=usage)
    if results == 1:
        return FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": 2}, id="c2")], usage=usage)
    return FakeResponse(text="5, after a nap", usage=usage)


def telemetry() -> tuple[Telemetry, InMemorySpanExporter, InMemoryMetricReader]:
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    return (
        Telemetry.with_exporters(EXECUTION_SERVICE_NAME, span_exporters=[spans], metric_readers=[reader]),
        spans,
        reader,
    )


def replayed(span: ReadableSpan) -> bool:
    return bool((span.attributes or {}).get("agentrun.replayed"))


def tool_spans(spans: list[ReadableSpan]) -> dict[str, ReadableSpan]:
    return {str((s.attributes or {})["gen_ai.tool.name"]): s for s in spans if s.name.startswith("execute_tool ")}


async def test_a_durable_run_is_traced_and_its_resumption_continues_the_trace(tmp_path: Path) -> None:
    first, first_spans, _ = telemetry()
    second, second_spans, second_reader = telemetry()
    with execution_database() as url:
        durable: dict[str, Any] = {"execution_database_url": url, "replica_id": "trace-replica", "shutdown_grace_s": 0}
        async with running_stack(tmp_path, AGENTS, telemetry=first, **durable) as stack:
            stack.gemini.set_responder(respond)
            stream = stack.execution_stub().ExecuteAgent(
                ex.ExecuteAgentRequest(agent_name="tracer", task="add, then nap", detach=True)
            )
            started = (await stream.read()).run_started
            while (event := await stream.read()).step.tool_call.tool_name != "sleep":
                assert not event.HasField("run_finished")
            stream.cancel()
        # The replica stopped while the sleep call was in flight: the run resumes when it starts again.
        async with running_stack(tmp_path, AGENTS, telemetry=second, **durable) as stack:
            stack.gemini.set_responder(respond)
            events = [e async for e in stack.execution_stub().WatchRun(ex.WatchRunRequest(run_id=started.run_id))]
            assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
            stored = await stack.stored_run(started.run_id)
            assert len(stack.gemini.requests) == 1  # the two model calls made before the stop were not made again

    assert stored.trace_id == started.trace_id and len(started.trace_id) == 32
    before, after = list(first_spans.get_finished_spans()), list(second_spans.get_finished_spans())

    # The first execution: the run's span under the ExecuteAgent call, its model and tool calls under it.
    server = only(before, EXECUTE_AGENT, SpanKind.SERVER)
    stopped = only(before, "invoke_agent tracer", SpanKind.INTERNAL)
    assert trace_id(server) == trace_id(stopped) == started.trace_id
    assert parent_id(stopped) == span_id(server)
    assert stopped.attributes is not None
    assert stopped.attributes["agentrun.resumed"] is False
    assert stopped.attributes["agentrun.replica"] == "trace-replica"
    assert stopped.status.status_code == StatusCode.ERROR  # it stopped with the replica, the run went on later
    model_before = named(before, MODEL_SPAN, SpanKind.CLIENT)
    assert len(model_before) == 2 and not any(replayed(s) for s in model_before)
    assert all(parent_id(s) == span_id(stopped) for s in model_before)
    assert set(tool_spans(before)) == {"add", "sleep"}

    # The resumed execution: another span of the run's trace, with the same parent; the calls it replayed from their
    # checkpoints are marked, the ones it made are not.
    resumed = only(after, "invoke_agent tracer", SpanKind.INTERNAL)
    assert trace_id(resumed) == started.trace_id and parent_id(resumed) == span_id(server)
    assert resumed.attributes is not None and resumed.attributes["agentrun.resumed"] is True
    assert resumed.attributes["agentrun.run.status"] == "COMPLETED"
    assert resumed.status.status_code != StatusCode.ERROR
    model_after = named(after, MODEL_SPAN, SpanKind.CLIENT)
    assert [replayed(s) for s in sorted(model_after, key=lambda s: s.start_time or 0)] == [True, True, False]
    run_spans = [s for s in after if s.name.split(" ")[0] in ("invoke_agent", "generate_content", "execute_tool")]
    assert len(run_spans) == 1 + 3 + 2 and {trace_id(s) for s in run_spans} == {started.trace_id}
    assert all(parent_id(s) == span_id(resumed) for s in model_after)
    tools = tool_spans(after)
    assert replayed(tools["add"]) and not replayed(tools["sleep"])

    # Metrics count each call once: the resumed execution recorded only the call it made.
    inputs = [
        p for p in points(second_reader, "gen_ai.client.token.usage") if p.attributes["gen_ai.token.type"] == "input"
    ]
    assert sum(p.count for p in inputs) == 1 and sum(p.sum for p in inputs) == 100
    assert {p.attributes["gen_ai.tool.name"] for p in points(second_reader, "agentrun.tool.duration")} == {"sleep"}


async def test_a_durable_sub_agents_run_is_traced_under_its_parents_tool_call(tmp_path: Path) -> None:
    agents = {
        "boss": agent_source(model="gemini-2.5-flash", tools=["agents/helper"], body="You are boss. {{task}}"),
        "helper": agent_source(model="gemini-2.5-flash", body="You are helper. {{task}}"),
    }

    def by_agent(body: dict[str, Any]) -> FakeResponse:
        text = str(body.get("contents"))
        if "You are helper." in text:
            return FakeResponse(text="helped")
        if "functionResponse" in text or "function_response" in text:
            return FakeResponse(text="boss done")
        return FakeResponse(function_calls=[FakeFunctionCall("helper", {"task": "help"}, id="c1")])

    traced, spans, _ = telemetry()
    with execution_database() as url:
        async with running_stack(
            tmp_path, agents, telemetry=traced, execution_database_url=url, replica_id="trace-tree"
        ) as stack:
            stack.gemini.set_responder(by_agent)
            events = await stack.execute(agent_name="boss", task="delegate")
            assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
    finished = list(spans.get_finished_spans())
    boss = only(finished, "invoke_agent boss", SpanKind.INTERNAL)
    helper = only(finished, "invoke_agent helper", SpanKind.INTERNAL)
    call = only(finished, "execute_tool helper", SpanKind.INTERNAL)
    assert trace_id(boss) == trace_id(helper) == trace_id(call) == events[0].run_started.trace_id
    assert parent_id(call) == span_id(boss) and parent_id(helper) == span_id(call)
