"""The whole system in one test process: a real RunsService on SQLite, the fake Gemini REST API, and a real
ExecutionService whose MCP servers are real subprocesses (tests/fixtures/mcp_test_server.py, mcp-server-time).
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.auth import AuthSettings
from agentrun_core.telemetry import Telemetry
from agentrun_core.tls import ClientTlsSettings, ServerTlsSettings
from execution_service.config import ExecutionSettings
from execution_service.server import RunningExecutionServer
from execution_service.server import start_server as start_execution
from runs_service.config import RunsSettings
from runs_service.server import RunningRunsServer
from runs_service.server import start_server as start_runs
from tests.fakes.gemini_server import FakeGemini, system_text_in
from tests.support.auth import channel as auth_channel

REPO = Path(__file__).resolve().parents[2]
TEST_MCP_SERVER = REPO / "tests" / "fixtures" / "mcp_test_server.py"


def mcp_config(extra: dict[str, Any] | None = None) -> dict[str, Any]:
    time_server = shutil.which("mcp-server-time", path=str(Path(sys.executable).parent))
    servers: dict[str, Any] = {
        "test": {"command": sys.executable, "args": [str(TEST_MCP_SERVER)]},
        "time": {
            "command": time_server or sys.executable,
            "args": ["--local-timezone", "UTC"]
            if time_server
            else ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        },
    }
    servers.update(extra or {})
    return {"mcpServers": servers}


def agent_source(
    *,
    model: str = "test",
    tools: list[str] | None = None,
    limits: dict[str, Any] | None = None,
    body: str = '{{role "system"}}\nYou are a test agent.\n{{role "user"}}\n{{task}}',
    extra_front_matter: str = "",
) -> str:
    lines = ["---", f"model: {model}"]
    if tools:
        lines.append("tools:")
        lines.extend(f"  - {t}" for t in tools)
    if limits:
        lines.append("limits:")
        lines.extend(f"  {k}: {v}" for k, v in limits.items())
    if extra_front_matter:
        lines.append(extra_front_matter.rstrip())
    lines.append("---")
    lines.append(body)
    return "\n".join(lines) + "\n"


def named_agent_source(
    name: str,
    *,
    model: str = "gemini-2.5-flash",
    tools: list[str] | None = None,
    limits: dict[str, Any] | None = None,
    extra_front_matter: str = "",
) -> str:
    """An agent whose system instruction is "You are <name>.": a fake Gemini responder serving several agents tells
    their requests apart with `agent_named_in`."""
    return agent_source(
        model=model,
        tools=tools,
        limits=limits,
        body=f'{{{{role "system"}}}}\nYou are {name}.\n{{{{role "user"}}}}\n{{{{task}}}}',
        extra_front_matter=extra_front_matter,
    )


def agent_named_in(body: dict[str, Any]) -> str:
    """The name of the `named_agent_source` agent that made a model request ("" for any other agent)."""
    found = re.search(r"You are ([^.\s]+)\.", system_text_in(body))
    return found.group(1) if found else ""


@dataclass
class Stack:
    tmp: Path
    gemini: FakeGemini
    runs: RunningRunsServer | None
    execution: RunningExecutionServer
    runs_address: str
    execution_address: str
    channels: list[grpc.aio.Channel] = field(default_factory=list)
    runs_settings: RunsSettings | None = None
    # TLS settings for the test's own client channels (None: plaintext).
    client_tls: ClientTlsSettings | None = None
    # Token the Stack's own reads of RunsService use (stored_run) when RunsService has authentication on.
    reader_token: str | None = None
    # Telemetry RunsService is (re)started with (None: from the environment).
    runs_telemetry: Telemetry | None = None

    def channel(
        self, target: str, *, token: str | None = None, header: str | None = None, tls: ClientTlsSettings | None = None
    ) -> grpc.aio.Channel:
        """A channel closed with the stack; `token` is sent as a bearer token, `header` as the raw value."""
        channel = auth_channel(target, token=token, header=header, tls=tls or self.client_tls)
        self.channels.append(channel)
        return channel

    def execution_stub(self, token: str | None = None, *, header: str | None = None) -> ex_grpc.ExecutionServiceStub:
        return ex_grpc.ExecutionServiceStub(self.channel(self.execution_address, token=token, header=header))

    def runs_stub(self, token: str | None = None, *, header: str | None = None) -> rs_grpc.RunsServiceStub:
        return rs_grpc.RunsServiceStub(self.channel(self.runs_address, token=token, header=header))

    async def execute(self, token: str | None = None, **request: Any) -> list[ex.ExecuteAgentResponse]:
        stub = self.execution_stub(token)
        return [event async for event in stub.ExecuteAgent(ex.ExecuteAgentRequest(**request))]

    async def stored_run(self, run_id: str, *, timeout_s: float = 15.0) -> run_pb2.Run:
        """The terminal run as RunsService stores it (waits for the outbox to deliver it)."""
        assert await self.execution.flush_outbox(timeout_s), "the outbox did not drain"
        reply = await self.runs_stub(self.reader_token).GetRun(rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL))
        return reply.run

    async def stop_runs(self) -> None:
        if self.runs is not None:
            await self.runs.stop(0)
            self.runs = None

    async def start_runs(self) -> None:
        assert self.runs_settings is not None
        self.runs = await start_runs(self.runs_settings, telemetry=self.runs_telemetry)


def write_agents(directory: Path, agents: dict[str, str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, source in agents.items():
        (directory / f"{name}.prompt").write_text(source)


@asynccontextmanager
async def running_stack(
    tmp: Path,
    agents: dict[str, str],
    *,
    mcp_servers: dict[str, Any] | None = None,
    gemini_latency_s: float = 0.0,
    with_runs_service: bool = True,
    runs_auth: AuthSettings | None = None,
    runs_tls: ServerTlsSettings | None = None,
    client_tls: ClientTlsSettings | None = None,
    reader_token: str | None = None,
    telemetry: Telemetry | None = None,
    runs_telemetry: Telemetry | None = None,
    **execution_overrides: Any,
) -> AsyncIterator[Stack]:
    """Authentication is off on both services unless `runs_auth` / `auth=` (an ExecutionSettings override) say
    otherwise, like the demo: AGENTRUN_AUTH=off. `runs_tls` / `tls=` switch the listeners to TLS; `client_tls` is what
    the test's own channels use; `reader_token` is what `Stack.stored_run` reads RunsService with. `telemetry` goes to
    ExecutionService and, unless `runs_telemetry` is given, to RunsService (None: built from the environment)."""
    runs_telemetry = runs_telemetry or telemetry
    write_agents(tmp / "agents", agents)
    (tmp / "mcp.json").write_text(json.dumps(mcp_config(mcp_servers)))
    gemini = FakeGemini(latency_s=gemini_latency_s)
    base_url = await gemini.start()
    runs_port = free_port()
    runs_settings = RunsSettings(
        listen_address=f"127.0.0.1:{runs_port}",
        data_dir=tmp / "runs-data",
        migrate_on_start=True,
        page_token_secret="test-secret-0123456789abcdef",
        auth=runs_auth or AuthSettings.off(),
        tls=runs_tls or ServerTlsSettings(),
    )
    runs = await start_runs(runs_settings, telemetry=runs_telemetry) if with_runs_service else None
    settings = ExecutionSettings(
        listen_address="127.0.0.1:0",
        runs_service_target=f"127.0.0.1:{runs_port}",
        agents_dir=tmp / "agents",
        mcp_config=tmp / "mcp.json",
        data_dir=tmp / "execution-data",
        gemini_api_key="test-key",
        gemini_base_url=base_url,
        model_retry_initial_delay_s=0.01,
        model_retry_max_delay_s=0.05,
        log_format="text",
        auth=AuthSettings.off(),
    ).with_overrides(**execution_overrides)
    execution = await start_execution(settings, telemetry=telemetry)
    stack = Stack(
        tmp=tmp,
        gemini=gemini,
        runs=runs,
        execution=execution,
        runs_address=f"127.0.0.1:{runs_port}",
        execution_address=f"127.0.0.1:{execution.port}",
        runs_settings=runs_settings,
        client_tls=client_tls,
        reader_token=reader_token,
        runs_telemetry=runs_telemetry,
    )
    try:
        yield stack
    finally:
        for channel in stack.channels:
            await channel.close()
        await execution.stop(1.0)
        if stack.runs is not None:
            await stack.runs.stop(0)
        gemini.stop()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def steps_of(events: list[ex.ExecuteAgentResponse]) -> list[run_pb2.ExecutionStep]:
    return [e.step for e in events if e.WhichOneof("event") == "step"]


async def wait_for(predicate: Any, timeout_s: float = 10.0, interval_s: float = 0.05) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval_s)
