"""ExecutionService replicas for tests and benchmarks: processes (`python -m execution_service
--execution-database-url ...`) on one PostgreSQL database (or, with an empty database url, embedded replicas),
with a RunsService, the fake Gemini and the stdio MCP test server (whose call log, MCP_TEST_CALL_LOG, records every
echo and sleep call with its idempotency key)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.auth import AuthSettings
from runs_service.config import RunsSettings
from runs_service.server import RunningRunsServer
from runs_service.server import start_server as start_runs
from tests.fakes.gemini_server import FakeGemini
from tests.support.postgres import PostgresServer, find_postgres
from tests.support.stack import REPO, TEST_MCP_SERVER, free_port, mcp_config, write_agents

READY_TIMEOUT_S = 60.0


@contextmanager
def execution_database() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped after), or the test is skipped with the reason."""
    server, description = find_postgres()
    if server is None:
        pytest.skip(description)
    assert isinstance(server, PostgresServer)
    url = server.create_database(prefix="agentrun_durable")
    try:
        yield url
    finally:
        server.drop_database(url)
        server.stop()


@dataclass
class Replica:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL: no shutdown at all."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class Cluster:
    tmp: Path
    database_url: str
    gemini: FakeGemini
    gemini_url: str
    runs: RunningRunsServer | None
    runs_settings: RunsSettings
    runs_address: str
    call_log: Path
    replica_env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def stop_runs(self) -> None:
        """Stops RunsService (the replicas' records wait, and are retried)."""
        if self.runs is not None:
            await self.runs.stop(0)
            self.runs = None

    async def start_runs(self) -> None:
        """Starts RunsService again, on its address and database."""
        if self.runs is None:
            self.runs = await start_runs(self.runs_settings)

    async def start_replica(self, name: str, *, port: int | None = None, **env: str) -> Replica:
        port = port or free_port()
        log_path = self.tmp / f"replica-{name}-{len(self.replicas)}.log"
        environ = {
            **os.environ,
            "AGENTRUN_EXECUTION_ADDRESS": f"127.0.0.1:{port}",
            "AGENTRUN_RUNS_SERVICE_TARGET": self.runs_address,
            "AGENTRUN_AGENTS_DIR": str(self.tmp / "agents"),
            "AGENTRUN_MCP_CONFIG": str(self.tmp / "mcp.json"),
            "AGENTRUN_DATA_DIR": str(self.tmp / f"data-{name}"),
            "AGENTRUN_AUTH": "off",
            "AGENTRUN_REPLICA_ID": name,
            "AGENTRUN_LOG_FORMAT": "text",
            "GEMINI_API_KEY": "test-key",
            "GOOGLE_GEMINI_BASE_URL": self.gemini_url,
            "AGENTRUN_MODEL_RETRY_INITIAL_DELAY_S": "0.01",
            "PYTHONPATH": str(REPO),
            **self.replica_env,
            **env,
        }
        if not self.database_url:  # embedded: a durable URL inherited from the environment must not switch it
            environ.pop("AGENTRUN_EXECUTION_DATABASE_URL", None)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "execution_service", *self._mode_args()],
                cwd=REPO,
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(name, port, process, log_path)
        self.replicas.append(replica)
        await self._wait_ready(replica)
        return replica

    def _mode_args(self) -> list[str]:
        """Durable on the cluster's database; embedded (SQLite outbox in the replica's data dir) without one."""
        return ["--execution-database-url", self.database_url] if self.database_url else []

    async def _wait_ready(self, replica: Replica) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        stub = self.stub(replica)
        while True:
            if replica.process.poll() is not None:
                raise RuntimeError(f"replica {replica.name} exited: {replica.log()[-3000:]}")
            try:
                await stub.ListAgents(ex.ListAgentsRequest(), timeout=2)
                return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replica {replica.name} did not serve: {replica.log()[-3000:]}") from None
                await asyncio.sleep(0.2)

    def stub(self, replica: Replica) -> ex_grpc.ExecutionServiceStub:
        channel = grpc.aio.insecure_channel(replica.address)
        self.channels.append(channel)
        return ex_grpc.ExecutionServiceStub(channel)

    def runs_stub(self) -> rs_grpc.RunsServiceStub:
        channel = grpc.aio.insecure_channel(self.runs_address)
        self.channels.append(channel)
        return rs_grpc.RunsServiceStub(channel)

    async def stored_run(self, run_id: str, timeout_s: float = 60.0) -> run_pb2.Run:
        """The run once RunsService stores it terminal."""
        stub = self.runs_stub()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                run = (await stub.GetRun(rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL))).run
                if run.status not in (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_UNSPECIFIED):
                    return run
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} was not stored terminal within {timeout_s} s")
            await asyncio.sleep(0.2)

    def calls(self) -> list[dict[str, Any]]:
        if not self.call_log.exists():
            return []
        return [json.loads(line) for line in self.call_log.read_text().splitlines() if line.strip()]


@asynccontextmanager
async def running_cluster(
    tmp: Path, database_url: str, agents: dict[str, str], **replica_env: str
) -> AsyncIterator[Cluster]:
    write_agents(tmp / "agents", agents)
    call_log = tmp / "mcp-calls.jsonl"
    test_server = {
        "command": sys.executable,
        "args": [str(TEST_MCP_SERVER)],
        "env": {"MCP_TEST_CALL_LOG": str(call_log)},
    }
    (tmp / "mcp.json").write_text(json.dumps(mcp_config({"test": test_server})))
    gemini = FakeGemini()
    gemini_url = await gemini.start()
    runs_port = free_port()
    runs_settings = RunsSettings(
        listen_address=f"127.0.0.1:{runs_port}",
        data_dir=tmp / "runs-data",
        migrate_on_start=True,
        page_token_secret="test-secret-0123456789abcdef",
        auth=AuthSettings.off(),
    )
    cluster = Cluster(
        tmp=tmp,
        database_url=database_url,
        gemini=gemini,
        gemini_url=gemini_url,
        runs=await start_runs(runs_settings),
        runs_settings=runs_settings,
        runs_address=f"127.0.0.1:{runs_port}",
        call_log=call_log,
        replica_env=replica_env,
    )
    try:
        yield cluster
    finally:
        for channel in cluster.channels:
            await channel.close()
        for replica in cluster.replicas:
            replica.stop()
        await cluster.stop_runs()
        gemini.stop()
