"""Pieces of `agentrun serve` that need no running service."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def test_serve_all_starts_both_services_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    runs, execution = f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_LOG_FORMAT": "json"}
    env.pop("AGENTRUN_AUTH", None)
    cli = [sys.executable, "-m", "agentrun_cli"]
    proc = subprocess.Popen(
        [*cli, "serve", "all", "--runs-address", runs, "--execution-address", execution],
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
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "authentication is off" in out
    assert f"RunsService listening on {runs}" in out and f"ExecutionService listening on {execution}" in out
