"""ExecutionService benchmark: engine overhead per step, CPU split of a typical run, concurrency, step latency.

    .venv/bin/python bench/engine.py            # full (~7-8 min; sections 6 and 7 ~2.5 min each)
    .venv/bin/python bench/engine.py --quick    # smoke (~2 min; section 7 starts replica processes)

1. Overhead per step: RunManager driven directly (TestModel, an in-process MCP server through `mcp.Client(server)`,
   a RunSink that only counts). Per run: wall time minus the time spent inside the model provider and inside the
   tool calls (both wrapped and timed), divided by the run's steps. Telemetry on/off when agentrun_core.telemetry
   offers a switch.
2. CPU per typical run: the real ExecutionService and RunsService (SQLite) in this process, the real google-genai
   client against tests.fakes.gemini_server.FakeGemini (3 model calls: two function calls, then an answer), the
   stdio MCP test server (2 tool calls), every step streamed to a gRPC client. cProfile (thread CPU time) over the
   event loop thread; each function's own time is attributed by module to a part (loop, model client, MCP,
   streaming, publishing, and RunsService, which shares this process here but not in production); a function of a
   shared module (asyncio, grpc, protobuf, pydantic, ...) takes the parts of its callers.
3. Concurrency: 10 / 100 / 1,000 runs at once against TestModel(latency_s=0.5): wall time against the ideal (model
   calls per run x 0.5 s), and memory per in-flight run (tracemalloc, a separate pass).
4. Step-to-client latency: from the engine recording a step (StepRecorder.record, before the step is journaled and
   handed to the stream) to the gRPC client receiving it, next to a raw grpc.aio server stream replaying the same
   messages with the same gaps, interleaved.
5. Admission: 1,000 runs (100 with --quick) started at once against TestModel(latency_s=0.5) on a manager that
   executes at most a tenth of them at once (AGENTRUN_MAX_CONCURRENT_RUNS): the rest wait QUEUED. Wall time against
   the ideal (waves x model calls x 0.5 s), the most model calls in flight at once (must not exceed the limit), and
   the queue's own cost: the gap between a run leaving its slot and the next queued run starting.
6. Embedded vs durable, side by side (durable: AGENTRUN_EXECUTION_DATABASE_URL on a throwaway PostgreSQL database,
   one replica in this process): process CPU per typical run (3 model calls, 2 tool calls, the real stack of section
   2) and per long run (11 model calls, 10 tool calls), each beyond the idle stack's own CPU over the run's wall; the
   slope between the two is the CPU of a step (goal: durable adds < 2 ms of CPU per step), the rest of a typical
   run's the CPU of a run beyond its steps. And N concurrent typical runs (1,000; 20 with
   --quick) with 0.5 s model calls (FakeGemini latency) against an ExecutionService process of its own (embedded,
   durable, and durable over two replicas; tests.support.replicas, the client, RunsService and FakeGemini in this
   process): how many complete, wall time against the ideal 1.5 s (goal: durable within 3x), and the CPU each side
   used, so the wall can be read against the shortest the machine's cores allow.
7. Takeover, restart, cancel (durable replicas as processes, `python -m execution_service --execution-database-url`
   on a throwaway PostgreSQL database, tests.support.replicas: RunsService, FakeGemini, the stdio MCP test server;
   heartbeat 0.5 s, takeover timeout 3 s; 5 repetitions, 2 with --quick). (a) the replica running a run is SIGKILLed
   mid tool call (sleep): time until a survivor's WatchRun streams the run's first new step (RunResumed), raw and
   minus the takeover timeout (goal < 2 s after it); (b) SIGKILL, then the same replica started again at once: time
   from the restart command, and from the process serving gRPC, to the first new step (watched through another
   replica; goal < 2 s after the restart); (c) CancelRun(IMMEDIATE) sent to the other replica while the run is in a
   60 s tool call: time until the tool result CANCELLED step and until the run's stream ends CANCELLED (goal < 1 s).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import dataclasses
import gc
import importlib
import itertools
import json
import logging
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# Before grpc is imported, as the services' packages do (agentrun_core.grpc_process: uvloop and gRPC fork handlers).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from mcp import Client
from opentelemetry.sdk.metrics import MeterProvider as SdkMeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from agentrun_core import event_loop
from agentrun_core.domain import ExecutionStep, Run, RunStatus
from agentrun_core.telemetry import Telemetry
from bench._util import REPO, header, percentile, process_tree_cpu_s, processes_cpu_s, verdict
from execution_service.agents.registry import AgentRegistry
from execution_service.engine.manager import ManagerLimits, RunManager
from execution_service.engine.run_request import StartRun
from execution_service.model.base import ModelRequest, ModelResponse
from execution_service.model.test_model import TestModel
from execution_service.publish.step_journal import StepJournal
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome
from execution_service.tools.results import outcome_from_result
from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage
from tests.fixtures.mcp_test_server import server as mcp_test_server
from tests.support.postgres import find_postgres
from tests.support.replicas import Cluster, Replica, running_cluster
from tests.support.stack import Stack, agent_source, running_stack, wait_for, write_agents

GOALS = {"overhead_ms": 1.0, "telemetry_pct": 10.0, "memory_kb": 200.0, "latency_ratio": 2.0}
TOOLS = ["test/echo", "test/add"]


# --- in-process parts ------------------------------------------------------------------------------------------


@dataclass
class Clock:
    """Seconds spent inside wrapped calls (model provider, tools)."""

    model_s: float = 0.0
    tools_s: float = 0.0


class TimedModel:
    """A ModelProvider timing its inner provider."""

    def __init__(self, inner: Any, clock: Clock) -> None:
        self.name = inner.name
        self._inner = inner
        self._clock = clock

    async def generate(self, request: ModelRequest) -> ModelResponse:
        t0 = time.perf_counter()
        try:
            return await self._inner.generate(request)
        finally:
            self._clock.model_s += time.perf_counter() - t0


class InFlightModel:
    """A ModelProvider counting the calls in flight through it, and the most at once."""

    def __init__(self, inner: Any) -> None:
        self.name = inner.name
        self._inner = inner
        self.in_flight = 0
        self.most = 0

    async def generate(self, request: ModelRequest) -> ModelResponse:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            return await self._inner.generate(request)
        finally:
            self.in_flight -= 1


class InProcessMcpTools:
    """A ToolProvider over an MCP server object in this process (`mcp.Client(server)`), timing each call."""

    def __init__(self, client: Client, clock: Clock) -> None:
        self._client = client
        self._clock = clock
        self._tools: list[ResolvedTool] | None = None
        self._in_flight = 0
        self._since = 0.0

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        if self._tools is None:
            listed = (await self._client.list_tools()).tools
            self._tools = [
                ResolvedTool("test", t.name, t.name, t.description or "", t.input_schema)
                for t in listed
                if f"test/{t.name}" in patterns
            ]
        return self._tools

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        # A turn's tool calls run concurrently: count the time at least one is in flight (the union), not the sum.
        if self._in_flight == 0:
            self._since = time.perf_counter()
        self._in_flight += 1
        try:
            return outcome_from_result(await self._client.call_tool(tool.name, arguments))
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._clock.tools_s += time.perf_counter() - self._since


@dataclass
class CountingSink:
    """Counts records instead of storing them; journals each step in a real live-steps journal (its cost is the
    engine's: it is paid on the event loop before a step is streamed)."""

    journal: StepJournal
    records: int = 0
    finished: list[Run] = field(default_factory=list)

    async def record(self, run: Run) -> None:
        self.records += 1
        if run.status.is_terminal:
            self.finished.append(run)
            self.journal.forget(run.id)

    def journal_step(self, step: ExecutionStep) -> bytes:
        return self.journal.append(step)

    async def wait_delivered(self, run_id: str, timeout_s: float) -> bool:
        return True


def _manager(
    agents_dir: Path,
    client: Client,
    clock: Clock,
    model: TestModel,
    sink: CountingSink,
    telemetry: Telemetry | None = None,
    limits: ManagerLimits | None = None,
    wrap: Callable[[Any], Any] = lambda provider: provider,
) -> RunManager:
    """`telemetry`: the service's providers; by default what the service has without OTEL_* settings. `wrap`: a
    wrapper around the (timed) model provider."""
    write_agents(agents_dir, {"bench": agent_source(model="test", tools=TOOLS)})
    registry = AgentRegistry(agents_dir, "test")
    registry.load()
    provider = wrap(TimedModel(model, clock))
    return RunManager(
        registry,
        InProcessMcpTools(client, clock),
        lambda _name: (provider, "test"),
        sink,
        limits=limits or ManagerLimits(max_concurrent_runs=5000, retain_finished=10),
        telemetry=telemetry,
    )


# --- 1. overhead per step ----------------------------------------------------------------------------------------


def telemetry_switch() -> Callable[[bool], None] | None:
    """A function switching agentrun telemetry on/off, when agentrun_core.telemetry offers one."""
    try:
        module = importlib.import_module("agentrun_core.telemetry")
    except ImportError:
        return None
    for name in ("set_enabled", "set_telemetry_enabled"):
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    enable, disable = getattr(module, "enable", None), getattr(module, "disable", None)
    if callable(enable) and callable(disable):
        return lambda on: enable() if on else disable()
    return None


async def overhead_runs(manager: RunManager, clock: Clock, sink: CountingSink, runs: int) -> list[float]:
    """Per-run engine overhead per step (seconds), one run at a time."""
    per_step = []
    for i in range(runs):
        clock.model_s = clock.tools_s = 0.0
        t0 = time.perf_counter()
        live = await manager.start(StartRun(agent_name="bench", task=f"task {i}", user="bench"))
        await manager.wait(live)
        wall = time.perf_counter() - t0
        run = sink.finished[-1]
        assert run.status is RunStatus.COMPLETED, run.error
        per_step.append((wall - clock.model_s - clock.tools_s) / len(run.execution_steps))
    return per_step


class _DiscardingSpanExporter(SpanExporter):
    """Accepts and drops spans (what an OTLP exporter costs on its batch thread is not the engine's)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _exporting_telemetry() -> Telemetry:
    """SDK providers as a service with an exporter configured has them: spans through a BatchSpanProcessor (export on
    its own thread), metrics aggregated for a reader (collected on demand, as a periodic reader does every 60 s)."""
    tracer_provider = SdkTracerProvider(shutdown_on_exit=False)
    tracer_provider.add_span_processor(BatchSpanProcessor(_DiscardingSpanExporter()))
    meter_provider = SdkMeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    return Telemetry(tracer_provider, meter_provider)


async def bench_overhead(quick: bool, tmp: Path) -> dict[str, Any]:
    header(
        "1. Engine overhead per step (RunManager, TestModel, in-process MCP server, live-steps journal, counting sink)"
    )
    runs = 60 if quick else 400
    clock, sink = Clock(), CountingSink(StepJournal(tmp / "live-steps"))
    switch = telemetry_switch()
    out: dict[str, Any] = {}
    # "on": the OpenTelemetry SDK providers of a service without OTEL_* settings (no exporter: spans and metric
    # points are created, then dropped), and of one with an exporter configured. "off": the same services with run
    # instrumentation switched off.
    configs = {"default": None, "export": _exporting_telemetry()}
    async with Client(mcp_test_server) as client:
        managers = {
            name: _manager(tmp / f"agents-overhead-{name}", client, clock, TestModel(), sink, telemetry)
            for name, telemetry in configs.items()
        }
        for manager in managers.values():
            await overhead_runs(manager, clock, sink, 10)  # warm-up
        modes = ["off", "on", "on+export"] if switch is not None else ["off"]
        samples: dict[str, list[float]] = defaultdict(list)
        for _ in range(2):  # interleave off, on, on+export, off, on, on+export
            for mode in modes:
                if switch is not None:
                    switch(mode != "off")
                manager = managers["export" if mode == "on+export" else "default"]
                samples[mode] += await overhead_runs(manager, clock, sink, runs // 2)
        if switch is not None:
            switch(False)
    steps = len(sink.finished[-1].execution_steps)
    print(f"{runs} runs per mode, {steps} steps each (2 model calls, 2 tool calls as start/finish pairs, final answer)")
    labels = {
        "off": "telemetry off      ",
        "on": "telemetry on       ",
        "on+export": "telemetry on+export",
    }
    for mode in modes:
        med = statistics.median(samples[mode]) * 1e3
        out[f"overhead_{mode}_ms"] = med
        print(
            f"  {labels[mode]}: median {med:.3f} ms/step, p90 {percentile(samples[mode], 0.9) * 1e3:.3f} ms "
            f"(goal < {GOALS['overhead_ms']} ms: {verdict(med < GOALS['overhead_ms'])})"
        )
    if switch is None:
        print("  telemetry on/off: agentrun_core.telemetry has no switch yet: measured 'off' only")
        return out
    for mode, what in (("on", "on vs off"), ("on+export", "on+export vs off")):
        diff = (out[f"overhead_{mode}_ms"] / out["overhead_off_ms"] - 1) * 100
        out["telemetry_pct" if mode == "on" else "telemetry_export_pct"] = diff
        extra_us = (out[f"overhead_{mode}_ms"] - out["overhead_off_ms"]) * 1e3
        print(
            f"  telemetry {what}: {diff:+.1f}% ({extra_us:+.1f} us/step; goal under {GOALS['telemetry_pct']:.0f}%: "
            f"{verdict(abs(diff) < GOALS['telemetry_pct'])})"
        )
    return out


# --- 2. CPU split -------------------------------------------------------------------------------------------------

PARTS: list[tuple[str, tuple[str, ...]]] = [
    (
        "loop",
        (
            "execution_service/engine/",
            "execution_service/agents/",
            "execution_service/model/retry",
            "execution_service/model/base",
            "execution_service/model/pricing",
            "dotpromptz",
            "handlebars",
        ),
    ),
    (
        "model client",
        (
            "execution_service/model/",
            "google/genai",
            "httpx",
            "httpcore",
            "h11",
            "h2/",
            "aiohttp",
            "google/auth",
            "tests/fakes",
        ),
    ),
    ("MCP", ("execution_service/tools/", "mcp/", "anyio", "jsonschema", "referencing", "rpds")),
    ("streaming", ("execution_service/api/", "bench/engine")),
    ("publishing", ("execution_service/publish/",)),
    # RunsService runs in this process here (in production it has its own): its share is not ExecutionService's.
    ("RunsService", ("runs_service/", "sqlalchemy", "aiosqlite", "alembic")),
]


def _part_of(filename: str) -> str | None:
    name = filename.replace("\\", "/")
    for part, prefixes in PARTS:
        if any(p in name for p in prefixes):
            return part
    return None


def attribute(profile: cProfile.Profile) -> dict[str, float]:
    """Own time of every function, given to its module's part; an unclassified function's time goes to its callers'
    parts in proportion to the time it spent under each caller (what cannot be traced is 'event loop / other')."""
    stats: Any = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # {func: (cc, nc, tt, ct, callers{func: (cc, nc, tt, ct)})}
    memo: dict[Any, dict[str, float]] = {}

    def shares(func: Any, depth: int) -> dict[str, float]:
        if func in memo:
            return memo[func]
        part = _part_of(func[0])
        if part is not None:
            result = {part: 1.0}
        else:
            callers = stats.get(func, (0, 0, 0.0, 0.0, {}))[4]
            total = sum(edge[3] for edge in callers.values())
            if depth > 40 or not callers or total <= 0:
                result = {"event loop / other": 1.0}
            else:
                memo[func] = {"event loop / other": 1.0}  # breaks cycles
                result = defaultdict(float)
                for caller, edge in callers.items():
                    for p, share in shares(caller, depth + 1).items():
                        result[p] += share * edge[3] / total
                result = dict(result)
        memo[func] = result
        return result

    totals: dict[str, float] = defaultdict(float)
    for func, (_cc, _nc, tt, _ct, _callers) in stats.items():
        for part, share in shares(func, 0).items():
            totals[part] += tt * share
    return dict(totals)


# Section 6's long run: this task makes the fake call a tool LONG_TOOL_CALLS times before it answers.
LONG_TASK = "bench: a long run"
LONG_TOOL_CALLS = 10


def _gemini_responder(body: dict[str, Any]) -> FakeResponse:
    contents = body.get("contents") or []
    turns = len(contents)
    usage = FakeUsage(prompt=400 + 50 * turns, candidates=30, thoughts=10)
    if _asks_long_run(contents):
        if turns < 2 * LONG_TOOL_CALLS:
            return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": f"call {turns}"})], usage=usage)
        return FakeResponse(text="Done.", usage=usage)
    if turns == 1:
        return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "hello"})], usage=usage)
    if turns == 3:
        return FakeResponse(function_calls=[FakeFunctionCall("add", {"a": 2, "b": 3})], usage=usage)
    return FakeResponse(text="Echoed hello; 2 + 3 = 5.", usage=usage)


def _asks_long_run(contents: list[dict[str, Any]]) -> bool:
    first = contents[0].get("parts") or [] if contents else []
    return any(LONG_TASK in (part.get("text") or "") for part in first)


async def _execute(stub: ex_grpc.ExecutionServiceStub, model: str, task: str = "go") -> list[ex.ExecuteAgentResponse]:
    events = [e async for e in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="bench", task=task, model=model))]
    finished = events[-1].run_finished
    assert finished.status == 2, finished  # RUN_STATUS_COMPLETED
    return events


async def bench_cpu_split(quick: bool, tmp: Path) -> dict[str, Any]:
    header("2. CPU per typical run (real google-genai -> FakeGemini, stdio MCP, gRPC stream, RunsService on SQLite)")
    runs = 15 if quick else 80
    out: dict[str, Any] = {}
    async with running_stack(
        tmp / "cpu", {"bench": agent_source(model="gemini-2.5-flash", tools=TOOLS)}, rate_limit_per_minute=0.0
    ) as stack:
        stack.gemini.set_responder(_gemini_responder)
        stub = stack.execution_stub()
        for _ in range(3):  # warm-up: MCP server start, genai client, connections
            await _execute(stub, "gemini-2.5-flash")
        assert await stack.execution.flush_outbox(15)
        gc.collect()
        # CPU time of the event-loop thread, not wall time: time spent waiting in epoll (for FakeGemini's thread, the
        # MCP subprocess, SQLite threads) would otherwise be charged to whichever part awaited.
        profile = cProfile.Profile(time.thread_time)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        profile.enable()
        steps = 0
        for _ in range(runs):
            events = await _execute(stub, "gemini-2.5-flash")
            steps = sum(1 for e in events if e.WhichOneof("event") == "step")
        assert await stack.execution.flush_outbox(15)
        profile.disable()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        # Again without the profiler, for the plain CPU per run.
        cpu1 = time.process_time()
        for _ in range(runs):
            await _execute(stub, "gemini-2.5-flash")
        assert await stack.execution.flush_outbox(15)
        plain = (time.process_time() - cpu1) / runs
    parts = attribute(profile)
    profiled = sum(parts.values())
    out["cpu_per_run_ms"] = plain * 1e3
    print(
        f"{runs} runs of {steps} steps (3 model calls, 2 tool calls); process CPU per run {plain * 1e3:.1f} ms "
        f"without the profiler ({cpu / runs * 1e3:.1f} ms with it; wall {wall / runs * 1e3:.1f} ms/run)"
    )
    print(
        "  includes in this process: ExecutionService, RunsService (SQLite), the gRPC client and FakeGemini's thread;"
        " the MCP server is a subprocess"
    )
    print("  split of the profiled event-loop CPU (cProfile, by module, shared modules by caller):")
    for part in ["loop", "model client", "MCP", "streaming", "publishing", "RunsService", "event loop / other"]:
        share = parts.get(part, 0.0) / profiled if profiled else 0.0
        out[f"share_{part}"] = share
        print(f"    {part:<20} {share * 100:5.1f}%  ~{share * plain * 1e3:6.1f} ms/run")
    return out


# --- 3. concurrency ----------------------------------------------------------------------------------------------


async def _concurrent(manager: RunManager, count: int, trace: bool) -> tuple[float, float]:
    """Starts `count` runs at once; returns (wall seconds, bytes per in-flight run measured 0.25 s in)."""
    gc.collect()
    base = tracemalloc.get_traced_memory()[0] if trace else 0
    t0 = time.perf_counter()
    lives = [await manager.start(StartRun(agent_name="bench", task=f"t{i}", user="bench")) for i in range(count)]
    await asyncio.sleep(0.25)
    in_flight = manager.live_count
    per_run = (tracemalloc.get_traced_memory()[0] - base) / max(in_flight, 1) if trace else 0.0
    await asyncio.gather(*(manager.wait(live) for live in lives))
    return time.perf_counter() - t0, per_run


async def bench_concurrency(quick: bool, tmp: Path) -> dict[str, Any]:
    header("3. Concurrency: N runs at once, TestModel(latency_s=0.5), in-process MCP server")
    latency, calls_per_run = 0.5, 2
    ideal = latency * calls_per_run
    out: dict[str, Any] = {}
    async with Client(mcp_test_server) as client:
        clock, sink = Clock(), CountingSink(StepJournal(tmp / "live-steps"))
        manager = _manager(tmp / "agents-conc", client, clock, TestModel(latency_s=latency), sink)
        await _concurrent(manager, 5, trace=False)
        for count in (10, 100, 1000):
            sink.finished.clear()
            wall, _ = await _concurrent(manager, count, trace=False)
            failed = [r for r in sink.finished if r.status is not RunStatus.COMPLETED]
            completed = len(sink.finished) - len(failed)
            tracemalloc.start()
            _, per_run = await _concurrent(manager, count, trace=True)
            tracemalloc.stop()
            out[f"wall_{count}"], out[f"kb_{count}"] = wall, per_run / 1024
            print(
                f"  {count:>5} runs: wall {wall:5.2f} s vs ideal {ideal:.2f} s ({wall / ideal:4.2f}x); "
                f"{completed}/{count} completed, {len(failed)} failed; "
                f"{per_run / 1024:6.1f} KB per in-flight run (goal < {GOALS['memory_kb']:.0f} KB: "
                f"{verdict(per_run / 1024 < GOALS['memory_kb'])})",
                flush=True,
            )
            if quick and count >= 100:
                break
    return out


# --- 5. admission ----------------------------------------------------------------------------------------------


async def bench_admission(quick: bool, tmp: Path) -> dict[str, Any]:
    header("5. Admission: N runs at once over a concurrency limit of N / 10, TestModel(latency_s=0.5)")
    latency, calls_per_run = 0.5, 2
    count = 100 if quick else 1000
    limit = count // 10
    ideal = (count // limit) * calls_per_run * latency
    async with Client(mcp_test_server) as client:
        clock, sink = Clock(), CountingSink(StepJournal(tmp / "live-steps-admission"))
        counted: list[InFlightModel] = []

        def wrap(provider: Any) -> InFlightModel:
            counted.append(InFlightModel(provider))
            return counted[-1]

        limits = ManagerLimits(max_concurrent_runs=limit, max_queued_runs=count, retain_finished=count)
        manager = _manager(
            tmp / "agents-admission", client, clock, TestModel(latency_s=latency), sink, None, limits, wrap
        )
        t0 = time.perf_counter()
        lives = [await manager.start(StartRun(agent_name="bench", task=f"t{i}", user="bench")) for i in range(count)]
        queued = sum(1 for live in lives if live.queued is not None)
        await asyncio.gather(*(manager.wait(live) for live in lives))
        wall = time.perf_counter() - t0
    finished = sorted(sink.finished, key=lambda run: run.start_time)
    completed = sum(1 for run in finished if run.status is RunStatus.COMPLETED)
    # A queued run starts when a run leaves its slot: the gap between the k-th start of a queued run and the k-th
    # end of execution (a run's last step) is the hand-off's cost.
    ends = sorted(run.execution_steps[-1].time for run in finished if run.execution_steps)
    starts = sorted(run.start_time for run in finished if run.queue_duration is not None)
    gaps_ms = [max((start - end).total_seconds(), 0.0) * 1000 for start, end in zip(starts, ends, strict=False)]
    waits = sorted(run.queue_duration.total_seconds() for run in finished if run.queue_duration is not None)
    most = counted[0].most if counted else 0
    print(
        f"  {count} runs, limit {limit}: {queued} queued; wall {wall:5.2f} s vs ideal {ideal:.2f} s "
        f"({wall / ideal:4.2f}x); {completed}/{count} completed; most model calls at once {most} "
        f"(limit held: {verdict(most <= limit)})\n"
        f"  hand-off from a freed slot to the next run: p50 {percentile(gaps_ms, 0.5):.2f} ms, "
        f"p95 {percentile(gaps_ms, 0.95):.2f} ms; wait in the queue p50 {percentile(waits, 0.5):.2f} s, "
        f"max {max(waits, default=0.0):.2f} s",
        flush=True,
    )
    return {"wall": wall, "ideal": ideal, "most_in_flight": most, "handoff_p50_ms": percentile(gaps_ms, 0.5)}


# --- 6. embedded vs durable ------------------------------------------------------------------------------------


# How long section 6 watches an idle stack's CPU (the durable replica polls its queues whatever the load).
IDLE_S = 5.0


@dataclass
class Sequential:
    """Runs of one task one after another through an idle stack, all of it in this process."""

    cpu: float  # process CPU per run, s
    steps: int  # steps per run
    wall_per_run: float  # s
    start_p50: float  # ExecuteAgent sent -> its first event (run_started) received, s

    def busy_cpu(self, idle: float) -> float:
        """CPU per run beyond what the idle stack spends in a run's wall time (a cost per second, not per run)."""
        return self.cpu - idle * self.wall_per_run


@dataclass
class ModeFigures:
    typical: Sequential  # 3 model calls, 2 tool calls
    long: Sequential  # LONG_TOOL_CALLS + 1 model calls, LONG_TOOL_CALLS tool calls
    idle: float  # CPU per s of wall with no run

    @property
    def per_step(self) -> float:
        """CPU of one more step (the slope from the typical run to the long one): a run's fixed costs cancel out."""
        return (self.long.busy_cpu(self.idle) - self.typical.busy_cpu(self.idle)) / (
            self.long.steps - self.typical.steps
        )

    @property
    def per_run(self) -> float:
        """CPU of a run beyond its steps' (starting, admitting, finishing and publishing it)."""
        return self.typical.busy_cpu(self.idle) - self.per_step * self.typical.steps


async def _sequential(stack: Stack, task: str, runs: int) -> Sequential:
    """`runs` runs of `task`, and their delivery to RunsService, which is part of their cost."""
    stub = stack.execution_stub()
    steps = 0
    starts: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(runs):
        sent = time.perf_counter()
        events: list[ex.ExecuteAgentResponse] = []
        async for event in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="bench", task=task)):
            if not events:
                starts.append(time.perf_counter() - sent)
            events.append(event)
        assert events[-1].run_finished.status == 2, events[-1]  # RUN_STATUS_COMPLETED
        steps = sum(1 for e in events if e.WhichOneof("event") == "step")
    assert await stack.execution.flush_outbox(30)
    cpu = (time.process_time() - cpu0) / runs
    wall_per_run = (time.perf_counter() - wall0) / runs
    return Sequential(cpu, steps, wall_per_run, statistics.median(starts))


async def _mode_figures(tmp: Path, mode: str, runs: int, overrides: dict[str, Any]) -> ModeFigures:
    agents = {"bench": agent_source(model="gemini-2.5-flash", tools=TOOLS)}
    common: dict[str, Any] = {"rate_limit_per_minute": 0.0, "max_streams_per_user": 0}
    async with running_stack(tmp / f"modes-{mode}", agents, **common, **overrides) as stack:
        stack.gemini.set_responder(_gemini_responder)
        stub = stack.execution_stub()
        for _ in range(3):  # warm-up: MCP server start, genai client, connections
            await _execute(stub, "gemini-2.5-flash")
        assert await stack.execution.flush_outbox(15)
        gc.collect()
        idle0, idle_t0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(IDLE_S)
        idle = (time.process_time() - idle0) / (time.perf_counter() - idle_t0)
        typical = await _sequential(stack, "go", runs)
        long = await _sequential(stack, LONG_TASK, max(runs // 3, 3))
    return ModeFigures(typical, long, idle)


@dataclass
class Burst:
    """N typical runs started at once against one ExecutionService process, 0.5 s per model call."""

    wall: float
    completed: int
    replica_cpu: float  # the ExecutionService process and its stdio MCP server
    bench_cpu: float  # this process: the client, RunsService and the fake Gemini
    postgres_cpu: float  # the local PostgreSQL's processes (durable mode's journal, queue and workflow rows)

    @property
    def floor(self) -> float:
        """The shortest wall the CPU used allows on this machine's cores, whatever the latency."""
        return (self.replica_cpu + self.bench_cpu + self.postgres_cpu) / (os.cpu_count() or 1)


async def _burst(tmp: Path, mode: str, database_url: str, count: int, replicas: int = 1) -> Burst:
    """`count` runs at once through `replicas` replica processes (embedded without `database_url`, durable with it),
    sent to them in turn as a load balancer would."""
    agents = {"bench": agent_source(model="gemini-2.5-flash", tools=TOOLS)}
    limits = {"AGENTRUN_RATE_LIMIT_PER_MINUTE": "0", "AGENTRUN_MAX_STREAMS_PER_USER": "0"}
    async with running_cluster(tmp / f"burst-{mode}-{replicas}", database_url, agents, **limits) as cluster:
        cluster.gemini.set_responder(_gemini_responder)
        started = [await cluster.start_replica(f"{mode}-{index}") for index in range(replicas)]
        stubs = [cluster.stub(replica) for replica in started]
        for stub in stubs:
            for _ in range(3):  # warm-up: MCP server start, genai client, connections
                await _execute(stub, "gemini-2.5-flash")
        cluster.gemini.set_responder(lambda body: dataclasses.replace(_gemini_responder(body), delay_s=0.5))
        pids = [replica.process.pid for replica in started]

        def cpu_now() -> tuple[float, float, float]:
            return sum(map(process_tree_cpu_s, pids)), time.process_time(), processes_cpu_s("postgres")

        cpu0 = cpu_now()
        t0 = time.perf_counter()
        finished = await asyncio.gather(
            *(_execute(stubs[i % replicas], "gemini-2.5-flash", f"c{i}") for i in range(count)),
            return_exceptions=True,
        )
        wall = time.perf_counter() - t0
        cpu1 = cpu_now()
    failures = [outcome for outcome in finished if isinstance(outcome, BaseException)]
    if failures:
        kinds = sorted({_failure_kind(failure) for failure in failures})
        print(f"  {mode}: {len(failures)} of {count} runs did not complete: {'; '.join(kinds)}", flush=True)
    replica_cpu, bench_cpu, postgres_cpu = (after - before for after, before in zip(cpu1, cpu0, strict=True))
    return Burst(wall, count - len(failures), replica_cpu, bench_cpu, postgres_cpu if database_url else 0.0)


def _failure_kind(failure: BaseException) -> str:
    if isinstance(failure, grpc.aio.AioRpcError):
        return f"{failure.code().name} {failure.details()}"
    return f"{type(failure).__name__}: {failure}"[:200]


async def bench_modes(quick: bool, tmp: Path) -> dict[str, Any]:
    header("6. Embedded vs durable: CPU per typical run and per step; N typical runs at once with 0.5 s model calls")
    runs, concurrent = (10, 20) if quick else (60, 1000)
    ideal = 3 * 0.5
    out: dict[str, Any] = {}
    server, description = find_postgres()
    modes: list[tuple[str, dict[str, Any]]] = [("embedded", {})]
    database_url = ""
    if server is None:
        print(f"  durable: skipped, no PostgreSQL ({description})")
    else:
        database_url = server.create_database(prefix="agentrun_bench_durable")
        modes.append(("durable", {"execution_database_url": database_url, "replica_id": "bench"}))
    try:
        for mode, overrides in modes:
            figures = await _mode_figures(tmp, mode, runs, overrides)
            typical, long, idle = figures.typical, figures.long, figures.idle
            out[mode] = {
                "cpu_ms": typical.cpu * 1e3,
                "steps": typical.steps,
                "idle_ms_per_s": idle * 1e3,
                # The idle stack's CPU during one run's wall time: a cost per second of a replica, not per step.
                "idle_share_ms": idle * typical.wall_per_run * 1e3,
                "busy_ms": typical.busy_cpu(idle) * 1e3,
                "long_cpu_ms": long.cpu * 1e3,
                "long_steps": long.steps,
                "step_ms": figures.per_step * 1e3,
                "run_ms": figures.per_run * 1e3,
                "start_p50_ms": typical.start_p50 * 1e3,
            }
            print(
                f"  {mode:<9} typical run: CPU {typical.cpu * 1e3:6.1f} ms/run ({typical.steps} steps), "
                f"{typical.busy_cpu(idle) * 1e3:6.1f} beyond the idle cost ({idle * 1e3:.1f} ms of CPU per second "
                f"with no run, {typical.wall_per_run * 1e3:.0f} ms of wall per run); first event "
                f"{typical.start_p50 * 1e3:.0f} ms after ExecuteAgent (p50)",
                flush=True,
            )
            print(
                f"  {mode:<9} long run: CPU {long.cpu * 1e3:6.1f} ms/run ({long.steps} steps), "
                f"{long.busy_cpu(idle) * 1e3:6.1f} beyond the idle cost; so a step costs "
                f"{figures.per_step * 1e3:5.2f} ms and a run {figures.per_run * 1e3:5.1f} ms beyond its steps "
                "(client, services and fake Gemini in this process)",
                flush=True,
            )
        print(
            f"  {concurrent} runs at once, ExecutionService in its own process (this process: the client, RunsService "
            f"and the fake Gemini); ideal wall {ideal:.1f} s (three 0.5 s model calls)",
            flush=True,
        )
        # Durable mode once more over two replicas: the shared queue spreads the runs, a load balancer the calls.
        bursts = [(mode, 1) for mode, _ in modes] + [("durable", 2) for mode, _ in modes if mode == "durable"]
        for mode, replicas in bursts:
            burst = await _burst(tmp, mode, database_url if mode == "durable" else "", concurrent, replicas)
            label = mode if replicas == 1 else f"{mode} x{replicas}"
            out[label] = {**out.get(label, {}), "wall": burst.wall, "completed": burst.completed, "floor": burst.floor}
            print(
                f"  {label:<10} wall {burst.wall:5.2f} s ({burst.wall / ideal:5.2f}x the ideal), "
                f"{burst.completed}/{concurrent} completed (all: {verdict(burst.completed == concurrent)}); CPU: "
                f"ExecutionService {burst.replica_cpu:5.1f} s ({burst.replica_cpu / concurrent * 1e3:4.1f} ms/run), "
                f"client+RunsService+fake {burst.bench_cpu:5.1f} s, PostgreSQL {burst.postgres_cpu:4.1f} s, so no "
                f"shorter than {burst.floor:5.2f} s on {os.cpu_count()} cores ({burst.wall / burst.floor:4.2f}x "
                "that floor)",
                flush=True,
            )
    finally:
        if server is not None and database_url:
            server.drop_database(database_url)
            server.stop()
    if "durable" in out:
        embedded, durable = out["embedded"], out["durable"]
        added = (durable["cpu_ms"] - embedded["cpu_ms"]) / max(durable["steps"], 1)
        typical_added = (durable["busy_ms"] - embedded["busy_ms"]) / max(durable["steps"], 1)
        per_step = durable["step_ms"] - embedded["step_ms"]
        print(
            f"  durable adds {per_step:.2f} ms of CPU per step (goal < 2 ms: {verdict(per_step < 2.0)}) and "
            f"{durable['run_ms'] - embedded['run_ms']:.1f} ms per run beyond its steps (DBOS's workflow row, the "
            f"queue's claim, the admission record); over a typical run, {typical_added:.2f} ms per step beyond the "
            f"idle replica's own cost, {added:.2f} ms per step in all (the idle replica spends "
            f"{durable['idle_ms_per_s']:.1f} ms of CPU per second)",
            flush=True,
        )
        spread = out["durable x2"]
        ratio = durable["wall"] / ideal
        print(
            f"  {concurrent} at once: durable wall {ratio:.2f}x the ideal (goal < 3x: {verdict(ratio < 3.0)}), "
            f"{durable['wall'] / embedded['wall']:.2f}x embedded's wall, {durable['wall'] / durable['floor']:.2f}x "
            f"its CPU floor; over two replicas {spread['wall'] / ideal:.2f}x the ideal; all completed in both modes: "
            f"{verdict(embedded['completed'] == durable['completed'] == spread['completed'] == concurrent)}",
            flush=True,
        )
        out["durable_added_ms_per_step"] = per_step
        out["durable_added_ms_per_run"] = durable["run_ms"] - embedded["run_ms"]
        out["durable_added_ms_per_typical_step"] = typical_added
        out["durable_added_ms_per_typical_step_in_all"] = added
    return out


# --- 7. takeover, restart and cancel across replicas ----------------------------------------------------------

TAKEOVER_TIMEOUT_S = 3.0
RERUN_SLEEP_S = 1.0  # the tool call in flight at the kill, made again on resumption (RunResumed comes then)
TAKEOVER_AGENTS = {
    "sleeper": agent_source(
        model="gemini-2.5-flash", tools=["test/sleep"], limits={"tool_timeout": "120s", "run_timeout": "300s"}
    )
}


def _sleep_then_answer(seconds: float) -> Callable[[dict[str, Any]], FakeResponse]:
    """Turn 1 calls the MCP test server's sleep(seconds), turn 2 answers (decided by the results the request holds)."""

    def respond(body: dict[str, Any]) -> FakeResponse:
        answered = any(
            "functionResponse" in part or "function_response" in part
            for content in body.get("contents", [])
            for part in content.get("parts", [])
        )
        if answered:
            return FakeResponse(text="done")
        return FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": seconds})])

    return respond


async def _start_in_sleep(cluster: Cluster, replica: Replica, attempts: int = 10) -> tuple[Any, str, int]:
    """Starts a run through `replica` that `replica` executes, and reads its stream until the MCP server received its
    sleep call (the call is then in flight, not merely announced): (the ExecuteAgent stream, run id, last sequence
    seen). Runs enter the shared queue, which any replica woken at the time may dequeue: a run another replica took is
    cancelled and another one started."""
    for _ in range(attempts):
        sleeps = len(_sleep_calls(cluster))
        request = ex.ExecuteAgentRequest(agent_name="sleeper", task="go", detach=True)
        stream = cluster.stub(replica).ExecuteAgent(request)
        run_id, last, executor = "", 0, ""
        async for event in stream:
            if event.WhichOneof("event") == "run_started":
                run_id, executor = event.run_started.run_id, event.run_started.replica
                if executor != replica.name:
                    break
            elif event.WhichOneof("event") == "step":
                last = event.step.sequence
                if event.step.WhichOneof("payload") == "tool_call":
                    break
        else:
            raise RuntimeError(f"run {run_id} ended before its sleep call")
        if executor != replica.name:
            stream.cancel()
            await cluster.stub(replica).CancelRun(ex.CancelRunRequest(run_id=run_id, mode=ex.CANCEL_MODE_IMMEDIATE))
            continue
        await wait_for(lambda before=sleeps: len(_sleep_calls(cluster)) > before, timeout_s=60)
        return stream, run_id, last
    raise RuntimeError(f"{attempts} runs started through {replica.name} all executed on other replicas")


def _sleep_calls(cluster: Cluster) -> list[float]:
    """When the MCP test server received each sleep call (its call log, wall clock)."""
    return [float(call["at"]) for call in cluster.calls() if call["tool"] == "sleep"]


async def _rerun_at(cluster: Cluster, index: int) -> float:
    """When the sleep call number `index` (the in-flight one made again) reached the MCP server (wall clock)."""
    await wait_for(lambda: len(_sleep_calls(cluster)) > index, timeout_s=60)
    return _sleep_calls(cluster)[index]


class _Watch:
    """WatchRun(from_sequence) on one replica, read in a task: when the first step arrived, and how the run ended."""

    def __init__(self, cluster: Cluster, replica: Replica, run_id: str, from_sequence: int) -> None:
        self._call = cluster.stub(replica).WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=from_sequence))
        self.first_step_at = 0.0
        self.first_step = ""
        self.finished: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Returns once the stream is open (its RunStarted arrived), then reads the rest in a task."""
        opening = await self._call.read()
        if opening is grpc.aio.EOF or opening.WhichOneof("event") != "run_started":
            raise RuntimeError(f"WatchRun did not open with RunStarted: {opening}")
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while (event := await self._call.read()) is not grpc.aio.EOF:
            if event.WhichOneof("event") == "step" and not self.first_step_at:
                self.first_step_at = time.perf_counter()
                self.first_step = event.step.WhichOneof("payload")
            elif event.WhichOneof("event") == "run_finished":
                self.finished = event.run_finished.status

    async def wait_first_step(self, timeout_s: float) -> float:
        assert self._task is not None
        await wait_for(lambda: self.first_step_at > 0.0 or self._task.done(), timeout_s=timeout_s, interval_s=0.01)
        if not self.first_step_at:
            await self._task  # raises what ended the stream
            raise RuntimeError("the watched run's stream ended before a new step")
        return self.first_step_at

    async def wait_end(self, timeout_s: float) -> int:
        assert self._task is not None
        await asyncio.wait_for(self._task, timeout_s)
        if self.finished is None:
            raise RuntimeError("the watched run's stream ended without RunFinished")
        return self.finished


def _spread(label: str, values: Sequence[float]) -> str:
    return f"{label} p50 {percentile(values, 0.5):5.2f} s, max {max(values, default=math.nan):5.2f} s"


async def _takeover_by_survivor(cluster: Cluster, repetitions: int) -> tuple[list[float], list[float]]:
    """(a): SIGKILL of the replica running the run mid tool call; a survivor takes its runs over after the timeout.
    (time to the first new step, time to the in-flight call made again) after the kill."""
    cluster.gemini.set_responder(_sleep_then_answer(RERUN_SLEEP_S))
    survivors = [await cluster.start_replica(f"survivor-{i}") for i in (1, 2)]
    raw: list[float] = []
    rerun: list[float] = []
    for rep in range(repetitions):
        victim = await cluster.start_replica(f"victim-{rep}")
        stream, run_id, last = await _start_in_sleep(cluster, victim)
        watch = _Watch(cluster, survivors[0], run_id, last + 1)
        await watch.start()
        calls = len(_sleep_calls(cluster))
        killed_at, killed_wall = time.perf_counter(), time.time()
        victim.kill()
        stream.cancel()
        raw.append(await watch.wait_first_step(60) - killed_at)
        rerun.append(await _rerun_at(cluster, calls) - killed_wall)
        if watch.first_step != "resumed":
            raise RuntimeError(f"the first step after the takeover was {watch.first_step}, not RunResumed")
        if await watch.wait_end(60) != run_pb2.RUN_STATUS_COMPLETED:
            raise RuntimeError(f"run {run_id} did not complete after the takeover")
        print(
            f"  takeover {rep + 1}: kill -> first new step on a survivor {raw[-1]:5.2f} s "
            f"({raw[-1] - TAKEOVER_TIMEOUT_S:+5.2f} s after the {TAKEOVER_TIMEOUT_S:.0f} s timeout); "
            f"kill -> the in-flight call made again {rerun[-1]:5.2f} s ({rerun[-1] - TAKEOVER_TIMEOUT_S:+5.2f} s)",
            flush=True,
        )
    for survivor in survivors:  # with a short takeover timeout they would take the restarting replica's runs
        survivor.stop()
    return raw, rerun


async def _restart(
    cluster: Cluster, repetitions: int
) -> tuple[list[float], list[float], list[float], Replica, Replica]:
    """(b): SIGKILL, then the same replica (same AGENTRUN_REPLICA_ID) started again at once; it resumes its runs at
    launch. Watched through another replica whose takeover timeout (120 s) keeps it out of the way."""
    watcher = await cluster.start_replica("watcher", AGENTRUN_TAKEOVER_TIMEOUT_S="120")
    replica = await cluster.start_replica("restarting", AGENTRUN_TAKEOVER_TIMEOUT_S="120")
    from_command: list[float] = []
    from_ready: list[float] = []
    rerun: list[float] = []
    for rep in range(repetitions):
        stream, run_id, last = await _start_in_sleep(cluster, replica)
        watch = _Watch(cluster, watcher, run_id, last + 1)
        await watch.start()
        calls = len(_sleep_calls(cluster))
        replica.kill()
        stream.cancel()
        commanded_at, commanded_wall = time.perf_counter(), time.time()
        replica = await cluster.start_replica("restarting", AGENTRUN_TAKEOVER_TIMEOUT_S="120")
        ready_at = time.perf_counter()  # ListAgents answered (polled every 0.2 s)
        first = await watch.wait_first_step(60)
        from_command.append(first - commanded_at)
        from_ready.append(first - ready_at)
        rerun.append(await _rerun_at(cluster, calls) - commanded_wall)
        if watch.first_step != "resumed" or await watch.wait_end(60) != run_pb2.RUN_STATUS_COMPLETED:
            raise RuntimeError(f"run {run_id} was not resumed to completion by the restarted replica")
        print(
            f"  restart {rep + 1}: restart command -> first new step {from_command[-1]:5.2f} s "
            f"(serving after {ready_at - commanded_at:4.2f} s; serving -> first new step {from_ready[-1]:+5.2f} s); "
            f"restart command -> the in-flight call made again {rerun[-1]:5.2f} s",
            flush=True,
        )
    return from_command, from_ready, rerun, replica, watcher


async def _cancel(
    cluster: Cluster, runner: Replica, other: Replica, repetitions: int
) -> tuple[list[float], list[float]]:
    """(c): CancelRun(IMMEDIATE) sent to the other replica while the run is in a 60 s tool call."""
    cluster.gemini.set_responder(_sleep_then_answer(60.0))
    to_result: list[float] = []
    to_end: list[float] = []
    for rep in range(repetitions):
        stream, run_id, _ = await _start_in_sleep(cluster, runner)
        asked_at = time.perf_counter()
        await cluster.stub(other).CancelRun(ex.CancelRunRequest(run_id=run_id, mode=ex.CANCEL_MODE_IMMEDIATE))
        result_at = 0.0
        status = None
        async for event in stream:
            if event.WhichOneof("event") == "step" and event.step.WhichOneof("payload") == "tool_result":
                if event.step.tool_result.status == run_pb2.TOOL_CALL_STATUS_CANCELLED:
                    result_at = time.perf_counter()
            elif event.WhichOneof("event") == "run_finished":
                status = event.run_finished.status
        ended_at = time.perf_counter()
        if status != run_pb2.RUN_STATUS_CANCELLED or not result_at:
            raise RuntimeError(f"run {run_id} did not end CANCELLED with a CANCELLED tool result (status {status})")
        to_result.append(result_at - asked_at)
        to_end.append(ended_at - asked_at)
        print(
            f"  cancel {rep + 1}: CancelRun -> tool result CANCELLED {to_result[-1]:5.2f} s, "
            f"stream ended CANCELLED {to_end[-1]:5.2f} s",
            flush=True,
        )
    return to_result, to_end


async def bench_takeover(quick: bool, tmp: Path) -> dict[str, Any]:
    header("7. Durable replicas (processes): SIGKILL -> takeover, SIGKILL -> restart, CancelRun(IMMEDIATE) via another")
    repetitions = 2 if quick else 5
    server, description = find_postgres()
    if server is None:
        print(f"  skipped, no PostgreSQL ({description})")
        return {}
    database_url = server.create_database(prefix="agentrun_bench_takeover")
    print(
        f"  heartbeat 0.5 s, takeover timeout {TAKEOVER_TIMEOUT_S:.0f} s, {repetitions} repetitions; "
        f"load average {os.getloadavg()[0]:.2f} at the start",
        flush=True,
    )
    try:
        async with running_cluster(
            tmp / "takeover",
            database_url,
            TAKEOVER_AGENTS,
            AGENTRUN_HEARTBEAT_INTERVAL_S="0.5",
            AGENTRUN_TAKEOVER_TIMEOUT_S=str(TAKEOVER_TIMEOUT_S),
        ) as cluster:
            raw, rerun = await _takeover_by_survivor(cluster, repetitions)
            from_command, from_ready, restart_rerun, runner, other = await _restart(cluster, repetitions)
            to_result, to_end = await _cancel(cluster, runner, other, repetitions)
    finally:
        server.drop_database(database_url)
        server.stop()
    after = [r - TAKEOVER_TIMEOUT_S for r in raw]
    print(
        f"  takeover: {_spread('kill -> first new step', raw)}; after the timeout "
        f"{_spread('', after).strip()} (goal < 2 s: {verdict(max(after) < 2.0)}); "
        f"{_spread('kill -> in-flight call made again', rerun)}",
        flush=True,
    )
    print(
        f"  restart: {_spread('restart command -> first new step', from_command)} "
        f"(goal < 2 s: {verdict(max(from_command) < 2.0)}); {_spread('serving -> first new step', from_ready)} "
        f"(goal < 2 s: {verdict(max(from_ready) < 2.0)}); "
        f"{_spread('restart command -> in-flight call made again', restart_rerun)}",
        flush=True,
    )
    print(
        "  (the first new step is RunResumed, recorded once the replay re-emitted the steps the stream held: "
        "about when the in-flight call is made again)",
        flush=True,
    )
    print(
        f"  cancel: {_spread('-> tool result CANCELLED', to_result)}; {_spread('-> stream ended', to_end)} "
        f"(goal < 1 s: {verdict(max(to_end) < 1.0)}); load average {os.getloadavg()[0]:.2f} at the end",
        flush=True,
    )
    return {
        "takeover_s": raw,
        "takeover_rerun_s": rerun,
        "restart_rerun_s": restart_rerun,
        "restart_from_command_s": from_command,
        "restart_from_ready_s": from_ready,
        "cancel_result_s": to_result,
        "cancel_end_s": to_end,
    }


# --- 4. step-to-client latency ---------------------------------------------------------------------------------


async def bench_latency(quick: bool, tmp: Path) -> dict[str, Any]:
    """The servers run in a child process (bench/latency_server.py), as they would in production, so the client's
    receive is not queued behind the servers' work on one event loop. Both the engine stream and the raw stream are
    served by that child; the raw one replays each run's messages with the gaps the engine had, interleaved."""
    header("4. Step-to-client latency: engine emit -> gRPC client receive, vs a raw grpc.aio stream (interleaved)")
    rounds = 10 if quick else 40
    out, ports_file = tmp / "latency.json", tmp / "latency-ports.json"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.latency_server", str(out), str(ports_file), cwd=str(REPO)
    )
    received_engine: dict[str, float] = {}
    received_raw: dict[str, list[float]] = {}
    sizes: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while not ports_file.exists():
            if time.monotonic() > deadline or child.returncode is not None:
                raise RuntimeError("the latency server did not start")
            await asyncio.sleep(0.1)
        ports = json.loads(ports_file.read_text())
        async with (
            grpc.aio.insecure_channel(ports["engine"]) as channel,
            grpc.aio.insecure_channel(ports["raw"]) as raw,
        ):
            stub, raw_stub = ex_grpc.ExecutionServiceStub(channel), ex_grpc.ExecutionServiceStub(raw)
            await _execute(stub, "test")
            for round_ in range(rounds):
                steps: list[ex.ExecuteAgentResponse] = []
                async for event in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="bench", task="go")):
                    now = time.perf_counter()  # first, as the raw stream's client does
                    if event.WhichOneof("event") == "step":
                        received_engine[f"{event.step.run_id}/{event.step.sequence}"] = now
                        steps.append(event)
                sizes += [len(m.SerializeToString()) for m in steps]
                key = f"replay-{round_}"
                script = {
                    "gaps": json.dumps(_gaps(steps, received_engine)),
                    "messages": json.dumps([base64.b64encode(m.SerializeToString()).decode() for m in steps]),
                }
                received_raw[key] = [
                    time.perf_counter()
                    async for _ in raw_stub.ExecuteAgent(ex.ExecuteAgentRequest(run_id=key, variables=script))
                ]
    finally:
        if child.returncode is None:
            child.terminate()
        await child.wait()
    times = json.loads(out.read_text())
    engine_lat = [received_engine[k] - times["emitted"][k] for k in received_engine if k in times["emitted"]]
    raw_lat = [r - s for key, got in received_raw.items() for r, s in zip(got, times["raw_sent"][key], strict=True)]
    e50, r50 = percentile(engine_lat, 0.5) * 1e6, percentile(raw_lat, 0.5) * 1e6
    ratio = e50 / r50
    print(
        f"{len(engine_lat)} steps (mean {statistics.mean(sizes):.0f} bytes): engine p50 {e50:.0f} us, p99 "
        f"{percentile(engine_lat, 0.99) * 1e6:.0f} us; raw stream p50 {r50:.0f} us, p99 "
        f"{percentile(raw_lat, 0.99) * 1e6:.0f} us; ratio of p50s {ratio:.2f} "
        f"(goal < {GOALS['latency_ratio']:.0f}x: {verdict(ratio < GOALS['latency_ratio'])})"
    )
    converted = times.get("converted", {})
    to_servicer = [converted[k] - times["emitted"][k] for k in received_engine if k in converted]
    to_client = [received_engine[k] - converted[k] for k in received_engine if k in converted]
    if to_servicer:
        print(
            f"  engine path: emit -> servicer yield p50 {percentile(to_servicer, 0.5) * 1e6:.0f} us; servicer yield "
            f"-> client p50 {percentile(to_client, 0.5) * 1e6:.0f} us"
        )
    by_seq: dict[int, list[float]] = defaultdict(list)
    for k, got in received_engine.items():
        if k in times["emitted"]:
            by_seq[int(k.rsplit("/", 1)[1])].append(got - times["emitted"][k])
    print(
        "  engine p50 by step number (us): "
        + ", ".join(f"#{s} {percentile(v, 0.5) * 1e6:.0f}" for s, v in sorted(by_seq.items()))
    )
    return {"engine_p50_us": e50, "raw_p50_us": r50, "ratio": ratio}


def _gaps(steps: list[ex.ExecuteAgentResponse], received: dict[str, float]) -> list[float]:
    """Gaps between consecutive steps as the client received them (the engine's pace)."""
    times = [received[f"{s.step.run_id}/{s.step.sequence}"] for s in steps]
    return [0.0] + [max(b - a, 0.0) for a, b in itertools.pairwise(times)]


async def amain(quick: bool, only: set[str]) -> None:
    print(f"engine benchmark ({'quick' if quick else 'full'}); 2-core shared machine: compare ratios", flush=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="agentrun-bench-engine-") as name:
        tmp = Path(name)
        steps: list[tuple[str, Callable[[bool, Path], Any]]] = [
            ("overhead", bench_overhead),
            ("cpu", bench_cpu_split),
            ("concurrency", bench_concurrency),
            ("latency", bench_latency),
            ("admission", bench_admission),
            ("modes", bench_modes),
            ("takeover", bench_takeover),
        ]
        for key, fn in steps:
            if not only or key in only:
                await fn(quick, tmp)
    print(f"\ndone in {time.perf_counter() - t0:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke mode (~2 min)")
    sections = ["overhead", "cpu", "concurrency", "latency", "admission", "modes", "takeover"]
    parser.add_argument("--only", action="append", choices=sections)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger().setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        # The loop the services run on (uvloop where installed), so sections 1-3 measure what production runs.
        event_loop.run(asyncio.wait_for(amain(args.quick, set(args.only or [])), timeout=300 if args.quick else 1800))


if __name__ == "__main__":
    main()
