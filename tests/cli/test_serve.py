"""Pieces of `agentrun serve` that need no running service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agentrun_cli.addresses import client_target

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("0.0.0.0:50051", "127.0.0.1:50051"),
        ("[::]:50051", "127.0.0.1:50051"),
        (":50051", "127.0.0.1:50051"),
        ("127.0.0.1:59051", "127.0.0.1:59051"),
        ("localhost:1", "localhost:1"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
    ],
)
def test_client_target(listen: str, target: str) -> None:
    assert client_target(listen) == target


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_all_starts_both_services_and_the_console_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    runs, execution = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    web = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_LOG_FORMAT": "json"}
    env.pop("AGENTRUN_AUTH", None)
    cli = [sys.executable, "-m", "agentrun_cli"]
    proc = subprocess.Popen(
        [*cli, "serve", "all", "--runs-address", runs, "--execution-address", execution, "--web-address", web],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            listed = subprocess.run(
                [*cli, "--execution-target", execution, "agents", "list", "--json"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if listed.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                break
            time.sleep(0.3)
        assert listed.returncode == 0, listed.stderr
        assert "clock" in listed.stdout
        # A run starts the time MCP server as a subprocess of the service (on the production event loop).
        ran = subprocess.run(
            [*cli, "--execution-target", execution, "run", "clock", "What time is it?", "--model", "test"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0 and "status: COMPLETED" in ran.stdout, ran.stdout + ran.stderr
        # The console shows that run without a sign-in (serve turned authentication off for everything).
        with urllib.request.urlopen(f"http://{web}/?agent=clock", timeout=30) as page:
            html = page.read().decode()
        assert page.status == 200 and 'data-status="COMPLETED"' in html and ">clock</td>" in html
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "authentication is off" in out
    assert f"RunsService listening on {runs}" in out and f"ExecutionService listening on {execution}" in out
    assert f"Web console at http://{web}/ (no sign-in (authentication off))" in out
    assert '"event_loop":"uvloop.Loop"' in out + err, "the services should run on uvloop where it is installed"
    assert "fork_posix" not in out + err  # gRPC's fork handlers stay quiet when uvloop spawns the MCP server


async def _watch_until_serving(
    channel: grpc.aio.Channel, service: str, deadline: float
) -> grpc.aio.UnaryStreamCall[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """An open health Watch of `service` that has reported SERVING (re-opened while the server is starting)."""
    while True:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service))
        try:
            while (reply := await watch.read()) is not grpc.aio.EOF:
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return watch
        except grpc.aio.AioRpcError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{service or 'the server'} did not become SERVING")
        await asyncio.sleep(0.2)


async def test_serve_all_reports_not_serving_to_open_health_watches_and_ends_them_on_ctrl_c(tmp_path: Path) -> None:
    """Both services go NOT_SERVING while shutting down, and open Watch streams end instead of holding the
    shutdown for the whole grace period (10 s for each service here)."""
    runs, execution = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_SHUTDOWN_GRACE_S": "10"}
    env.pop("AGENTRUN_AUTH", None)
    serve = ["serve", "all", "--runs-address", runs, "--execution-address", execution, "--no-web"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentrun_cli", *serve],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with (
            grpc.aio.insecure_channel(runs) as runs_channel,
            grpc.aio.insecure_channel(execution) as exec_channel,
        ):
            deadline = time.monotonic() + 60
            watches = [
                await _watch_until_serving(runs_channel, "agentrun.runs.v1.RunsService", deadline),
                await _watch_until_serving(exec_channel, "agentrun.execution.v1.ExecutionService", deadline),
                await _watch_until_serving(exec_channel, "", deadline),
            ]
            proc.send_signal(signal.SIGINT)
            started = time.monotonic()
            for watch in watches:
                reply = await asyncio.wait_for(watch.read(), 10)
                assert reply is not grpc.aio.EOF and reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
                assert await asyncio.wait_for(watch.read(), 10) is grpc.aio.EOF
            returncode = await asyncio.to_thread(proc.wait, 30)
            assert returncode == 0, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() - started < 8, "an open health Watch held up the shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_agentrun_web_serves_the_console_until_ctrl_c(tmp_path: Path) -> None:
    address = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "AGENTRUN_WEB_ADDRESS": address, "AGENTRUN_AUTH": "tokens"}
    env.pop("AGENTRUN_WEB_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentrun_cli", "--runs-target", f"127.0.0.1:{_free_port()}", "web"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.strip() == f"Web console at http://{address}/ (sign in with your token)", first
        with urllib.request.urlopen(f"http://{address}/healthz", timeout=10) as health:
            assert health.read() == b"ok"
        with urllib.request.urlopen(f"http://{address}/", timeout=10) as page:  # follows the redirect
            assert page.url.endswith("/login?next=%2F") and "Sign in" in page.read().decode()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_agentrun_web_refuses_a_bad_address() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "agentrun_cli", "web", "--address", "nowhere"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "error: AGENTRUN_WEB_ADDRESS / --address must be HOST:PORT, got 'nowhere'"


@pytest.mark.parametrize(
    ("which", "flag", "service"),
    [
        ("runs", "--runs-address", "RunsService"),
        ("execution", "--execution-address", "ExecutionService"),
    ],
)
def test_serve_names_an_address_in_use_in_one_line(tmp_path: Path, which: str, flag: str, service: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        done = subprocess.run(
            [sys.executable, "-m", "agentrun_cli", "serve", which, flag, address, "--data-dir", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "AGENTRUN_LOG_FORMAT": "text"},
        )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"refusing to start: {service} cannot listen on {address}: the address is in use" in done.stderr


@pytest.mark.parametrize(
    ("which", "flag", "service"),
    [("runs", "--runs-address", "RunsService"), ("execution", "--execution-address", "ExecutionService")],
)
def test_serve_with_port_0_announces_the_port_it_bound(tmp_path: Path, which: str, flag: str, service: str) -> None:
    """Before: "RunsService listening on 127.0.0.1:0", which nobody can dial."""
    env = {**os.environ, "AGENTRUN_LOG_FORMAT": "json", "AGENTRUN_RUNS_TARGET": f"127.0.0.1:{_free_port()}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentrun_cli", "serve", which, flag, "127.0.0.1:0", "--data-dir", str(tmp_path)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = ""
        while proc.poll() is None and not line.startswith(f"{service} listening on"):
            line = proc.stdout.readline()
        assert line.startswith(f"{service} listening on 127.0.0.1:"), line
        port = int(line.strip().rpartition(":")[2])
        assert port > 0
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0


def test_serve_all_refuses_port_0_it_could_not_tell_the_other_components(tmp_path: Path) -> None:
    """Before: ExecutionService was told to record runs to 127.0.0.1:0."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentrun_cli",
            "serve",
            "all",
            "--runs-address",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith(
        "error: --runs-address 127.0.0.1:0: `serve all` needs a fixed RunsService port"
    )


def test_serve_execution_names_a_bad_mcp_config_in_one_line(tmp_path: Path) -> None:
    mcp_json = tmp_path / "mcp.json"
    mcp_json.write_text(json.dumps({"mcpServers": {"time": {"command": "mcp-server-time", "argz": []}}}))
    command = ["serve", "execution", "--execution-address", "127.0.0.1:0", "--mcp-config", str(mcp_json)]
    done = subprocess.run(
        [sys.executable, "-m", "agentrun_cli", *command, "--data-dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "AGENTRUN_LOG_FORMAT": "text"},
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "refusing to start: MCP server 'time': unknown key(s) 'argz'" in done.stderr
