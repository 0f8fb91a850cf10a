"""Admission over two durable replicas (issue 10 §5, and its test list): 100 runs started through both replicas, each
replica executing at most 4 at once and both together at most 6; the rest wait QUEUED in the shared DBOS queue. Real
processes (two ExecutionService replicas on one PostgreSQL database), RunsService, one fake Gemini per replica (so the
per-replica and the global concurrency are both measured where the model calls arrive).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.auth import AuthSettings
from runs_service.config import RunsSettings
from runs_service.server import start_server as start_runs
from tests.fakes.gemini_server import FakeGemini, FakeResponse
from tests.support.postgres import find_postgres
from tests.support.stack import agent_source, free_port, mcp_config, write_agents

RUNS = 100
PER_REPLICA = 4
GLOBAL = 6

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    most = current = 0
    for _, change in edges:
        current += change
        most = max(most, current)
    return most


def replica_lines_about(tmp_path: Path, run_id: str) -> list[str]:
    """What the replicas logged about one run, to tell why it did not complete."""
    return [
        f"{log.name}: {line}"
        for log in sorted(tmp_path.glob("replica-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if run_id in line
    ]


async def test_100_runs_over_two_replicas_hold_the_limits_and_are_stored_once(tmp_path: Path) -> None:
    server, why = find_postgres()
    if server is None:
        pytest.skip(why)
    database_url = server.create_database("agentrun_admission")
    write_agents(tmp_path / "agents", {"worker": agent_source(model="gemini-2.5-flash")})
    (tmp_path / "mcp.json").write_text(json.dumps(mcp_config()))
    runs_port = free_port()
    runs = await start_runs(
        RunsSettings(
            listen_address=f"127.0.0.1:{runs_port}",
            data_dir=tmp_path / "runs-data",
            migrate_on_start=True,
            page_token_secret="test-secret-0123456789abcdef",
            auth=AuthSettings.off(),
        )
    )
    fakes = [FakeGemini(responder=lambda body: FakeResponse(text="done"), latency_s=0.3) for _ in range(2)]
    replicas: list[subprocess.Popen[bytes]] = []
    channels: list[grpc.aio.Channel] = []
    try:
        ports = []
        for index, fake in enumerate(fakes):
            port = free_port()
            ports.append(port)
            env = {
                **os.environ,
                "AGENTRUN_EXECUTION_ADDRESS": f"127.0.0.1:{port}",
                "AGENTRUN_RUNS_SERVICE_TARGET": f"127.0.0.1:{runs_port}",
                "AGENTRUN_AGENTS_DIR": str(tmp_path / "agents"),
                "AGENTRUN_MCP_CONFIG": str(tmp_path / "mcp.json"),
                "AGENTRUN_DATA_DIR": str(tmp_path / f"replica-{index}"),
                "AGENTRUN_EXECUTION_DATABASE_URL": database_url,
                "AGENTRUN_REPLICA_ID": f"replica-{index}",
                "AGENTRUN_MAX_CONCURRENT_RUNS": str(PER_REPLICA),
                "AGENTRUN_GLOBAL_MAX_CONCURRENT_RUNS": str(GLOBAL),
                "AGENTRUN_RATE_LIMIT_PER_MINUTE": "0",
                "AGENTRUN_MAX_STREAMS_PER_USER": "0",
                "GEMINI_API_KEY": "test-key",
                "GOOGLE_GEMINI_BASE_URL": await fake.start(),
                "AGENTRUN_AUTH": "off",
                "AGENTRUN_LOG_FORMAT": "json",
            }
            log = (tmp_path / f"replica-{index}.log").open("wb")
            replicas.append(
                subprocess.Popen([sys.executable, "-m", "execution_service"], env=env, stdout=log, stderr=log)
            )
            log.close()
        stubs = []
        for port in ports:
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            channels.append(channel)
            await asyncio.wait_for(channel.channel_ready(), 60)
            stubs.append(ex_grpc.ExecutionServiceStub(channel))

        async def start(index: int) -> tuple[str, str]:
            call = stubs[index % 2].ExecuteAgent(
                ex.ExecuteAgentRequest(agent_name="worker", task=f"run {index}", detach=True)
            )
            async for event in call:
                kind = event.WhichOneof("event")
                if kind in ("run_queued", "run_started"):
                    call.cancel()
                    return kind, event.run_queued.run_id if kind == "run_queued" else event.run_started.run_id
            raise AssertionError("the stream ended before the run was queued or started")

        started = await asyncio.gather(*(start(i) for i in range(RUNS)))
        run_ids = {run_id for _, run_id in started}
        assert len(run_ids) == RUNS
        assert sum(1 for kind, _ in started if kind == "run_queued") >= RUNS - GLOBAL  # the others had to wait

        runs_channel = grpc.aio.insecure_channel(f"127.0.0.1:{runs_port}")
        channels.append(runs_channel)
        runs_stub = rs_grpc.RunsServiceStub(runs_channel)
        stored: list[run_pb2.Run] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            reply = await runs_stub.ListRuns(rs.ListRunsRequest(filter='agent_name = "worker"', page_size=1000))
            stored = list(reply.runs)
            if len(stored) == RUNS and all(run.status == run_pb2.RUN_STATUS_COMPLETED for run in stored):
                break
            await asyncio.sleep(0.2)
        assert sorted(run.id for run in stored) == sorted(run_ids)  # every run stored, each once
        not_completed = [run for run in stored if run.status != run_pb2.RUN_STATUS_COMPLETED]
        assert not not_completed, [
            (run.id, run_pb2.RunStatus.Name(run.status), run.error.reason, replica_lines_about(tmp_path, run.id))
            for run in not_completed
        ]
        assert sum(len(fake.requests) for fake in fakes) == RUNS  # one model call each, none repeated
        assert all(fake.max_in_flight <= PER_REPLICA for fake in fakes), [f.max_in_flight for f in fakes]
        assert most_at_once([span for fake in fakes for span in fake.spans]) <= GLOBAL
        assert sum(1 for run in stored if run.HasField("queue_duration")) >= RUNS - GLOBAL
    finally:
        for channel in channels:
            await channel.close()
        for replica in replicas:
            replica.send_signal(signal.SIGTERM)
        for replica in replicas:
            try:
                replica.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.kill()
        for fake in fakes:
            fake.stop()
        await runs.stop(0)
        server.drop_database(database_url)
