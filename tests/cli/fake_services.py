"""Scripted RunsService and ExecutionService servicers on a real grpc.aio server (127.0.0.1:0), run in a thread
of their own so the synchronous CLI can call them from the test's thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from agentrun.runs.v1 import runs_service_pb2_grpc as runs_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agentrun_core.replica_channels import EXECUTION_SERVICE
from tests.cli import samples


@dataclass
class Calls:
    """What the fakes received, for assertions."""

    requests: list[object] = field(default_factory=list)
    metadata: list[dict[str, str]] = field(default_factory=list)
    cancels: list[ex_pb2.CancelRunRequest] = field(default_factory=list)

    def record(self, request: object, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.metadata.append({k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)})


class FakeRuns(runs_grpc.RunsServiceServicer):
    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.runs = {samples.RUN_ID: samples.clock_run()}

    async def GetRun(
        self, request: runs_pb2.GetRunRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.GetRunResponse:
        self.calls.record(request, context)
        run = self.runs.get(request.run_id)
        if run is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.run_id!r} not found")
        return runs_pb2.GetRunResponse(run=run)

    async def ListRuns(
        self, request: runs_pb2.ListRunsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.ListRunsResponse:
        self.calls.record(request, context)
        if "bogus" in request.filter:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "filter: unknown field 'bogus'; allowed fields: agent_name, status\n(at position 0)",
            )
        if request.page_token == "page-2":
            return runs_pb2.ListRunsResponse(runs=[samples.failed_run()])
        basic = samples.clock_run()
        del basic.execution_steps[:]
        del basic.tool_calls[:]
        return runs_pb2.ListRunsResponse(runs=[basic], next_page_token="page-2" if request.page_size == 1 else "")

    async def GetRunStats(
        self, request: runs_pb2.GetRunStatsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.GetRunStatsResponse:
        self.calls.record(request, context)
        key = runs_pb2.StatsGroupBy.Name(request.group_by).removeprefix("STATS_GROUP_BY_").lower()
        return runs_pb2.GetRunStatsResponse(
            groups=[
                runs_pb2.RunStatsGroup(
                    key=f"{key}-key",
                    run_count=40,
                    completed_count=38,
                    success_rate=0.95,
                    token_usage=samples.usage(40000, 2000),
                    cost=run_pb2.Cost(amount="0.25", currency_code="USD"),
                    duration_p50=samples.dur(1.2),
                    duration_p95=samples.dur(4.5),
                )
            ]
        )

    async def GetToolStats(
        self, request: runs_pb2.GetToolStatsRequest, context: grpc.aio.ServicerContext
    ) -> runs_pb2.GetToolStatsResponse:
        self.calls.record(request, context)
        return runs_pb2.GetToolStatsResponse(
            tools=[
                runs_pb2.ToolStats(
                    tool_name="get_current_time",
                    server="time",
                    call_count=20,
                    error_count=1,
                    error_rate=0.05,
                    duration_p50=samples.dur(0.012),
                    duration_p95=samples.dur(0.05),
                )
            ]
        )


SLOW_RUN_ID = "0193a5c4-0000-7000-8000-000000000051"


class FakeExecution(ex_grpc.ExecutionServiceServicer):
    """Agents: `clock` streams a whole run; `slow` waits in a tool call until CancelRun; `lost` loses its stream after
    two steps (UNAVAILABLE, as when its replica dies); others are NOT_FOUND."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls
        self.cancelled: asyncio.Event | None = None

    async def ExecuteAgent(
        self, request: ex_pb2.ExecuteAgentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ex_pb2.ExecuteAgentResponse]:
        self.calls.record(request, context)
        if request.agent_name == "clock":
            yield ex_pb2.ExecuteAgentResponse(run_started=samples.run_started())
            for step in samples.clock_steps():
                yield ex_pb2.ExecuteAgentResponse(step=step)
            yield ex_pb2.ExecuteAgentResponse(run_finished=samples.run_finished())
        elif request.agent_name == "slow":
            self.cancelled = asyncio.Event()
            yield ex_pb2.ExecuteAgentResponse(run_started=samples.run_started(SLOW_RUN_ID))
            yield ex_pb2.ExecuteAgentResponse(step=samples.clock_steps(SLOW_RUN_ID)[0])
            yield ex_pb2.ExecuteAgentResponse(step=samples.clock_steps(SLOW_RUN_ID)[1])
            await asyncio.wait_for(self.cancelled.wait(), 30)
            yield ex_pb2.ExecuteAgentResponse(
                run_finished=samples.run_finished(SLOW_RUN_ID, run_pb2.RUN_STATUS_CANCELLED)
            )
        elif request.agent_name == "lost":  # its replica dies after two steps
            yield ex_pb2.ExecuteAgentResponse(run_started=samples.run_started(SLOW_RUN_ID))
            yield ex_pb2.ExecuteAgentResponse(step=samples.clock_steps(SLOW_RUN_ID)[0])
            yield ex_pb2.ExecuteAgentResponse(step=samples.clock_steps(SLOW_RUN_ID)[1])
            await context.abort(grpc.StatusCode.UNAVAILABLE, "Socket closed")
        else:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"agent {request.agent_name!r} not found")

    async def CancelRun(
        self, request: ex_pb2.CancelRunRequest, context: grpc.aio.ServicerContext
    ) -> ex_pb2.CancelRunResponse:
        self.calls.record(request, context)
        self.calls.cancels.append(request)
        if request.run_id == samples.RUN_ID:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"run {request.run_id!r} already finished")
        if self.cancelled is not None:
            self.cancelled.set()
        return ex_pb2.CancelRunResponse(run_id=request.run_id)

    async def WatchRun(
        self, request: ex_pb2.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ex_pb2.WatchRunResponse]:
        self.calls.record(request, context)
        if request.run_id != samples.RUN_ID:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"run {request.run_id!r} is not live")
        yield ex_pb2.WatchRunResponse(run_started=samples.run_started())
        for step in samples.clock_steps():
            if step.sequence >= request.from_sequence:
                yield ex_pb2.WatchRunResponse(step=step)
        yield ex_pb2.WatchRunResponse(run_finished=samples.run_finished())

    async def ListAgents(
        self, request: ex_pb2.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> ex_pb2.ListAgentsResponse:
        self.calls.record(request, context)
        return ex_pb2.ListAgentsResponse(
            agents=[
                ex_pb2.Agent(
                    name="clock",
                    version="sha256:0123456789abcdef",
                    model="gemini-2.5-flash",
                    tools=["time/*"],
                    limits=ex_pb2.AgentLimits(max_steps=6, run_timeout=samples.dur(60), tool_timeout=samples.dur(10)),
                )
            ],
            errors=[ex_pb2.AgentLoadError(path="examples/agents/broken.prompt", message="invalid YAML front matter")],
        )


class FakeServer:
    """Both fakes on one grpc.aio server, on an event loop in a daemon thread."""

    def __init__(self) -> None:
        self.calls = Calls()
        self.runs = FakeRuns(self.calls)
        self.execution = FakeExecution(self.calls)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-grpc", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> int:
        self._server = grpc.aio.server()
        runs_grpc.add_RunsServiceServicer_to_server(self.runs, self._server)
        ex_grpc.add_ExecutionServiceServicer_to_server(self.execution, self._server)
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        await self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        # As the real services report themselves (clients of ExecutionService send calls to replicas that serve).
        await self.health.set(EXECUTION_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self.health.set("agentrun.Down", health_pb2.HealthCheckResponse.NOT_SERVING)
        return port

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
