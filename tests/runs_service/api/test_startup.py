"""Start-up and shutdown of the RunsService process: schema checks, migration flag, health, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentrun_core.auth import AuthSettings
from runs_service.config import RunsSettings
from runs_service.domain import SchemaOutdated
from runs_service.server import start_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refuses_an_unmigrated_database_and_names_the_command(tmp_path: Path) -> None:
    settings = RunsSettings(
        listen_address="127.0.0.1:0", data_dir=tmp_path, migrate_on_start=False, auth=AuthSettings.off()
    )
    with pytest.raises(SchemaOutdated) as caught:
        await start_server(settings)
    assert "agentrun-runs-service migrate" in caught.value.message


async def wait_serving(address: str, timeout_s: float = 20.0) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                reply = await health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{address} did not become SERVING")
            await asyncio.sleep(0.1)


async def test_process_migrates_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_LOG_FORMAT": "json", "AGENTRUN_AUTH": "off"}
    # Without the flag the process refuses to start with exit code 3 and says how to migrate.
    refused = subprocess.run(
        [sys.executable, "-m", "runs_service", "--address", f"127.0.0.1:{port}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 3, refused.stderr
    assert "migrate" in refused.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "runs_service", "--address", f"127.0.0.1:{port}", "--migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        await wait_serving(f"127.0.0.1:{port}")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 0, stderr
        assert "shutting down" in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "runs.db").exists()
