"""Ctrl-C during `agentrun run` cancels the run on the server, shows how it ended, and exits 130."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2

from tests.cli.fake_services import SLOW_RUN_ID, FakeServer

REPO = Path(__file__).resolve().parents[2]


def test_sigint_cancels_the_run_and_exits_130(fake: FakeServer) -> None:
    env = {**os.environ, "AGENTRUN_EXECUTION_TARGET": fake.target, "AGENTRUN_TOKEN": ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentrun_cli", "run", "slow", "take your time"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line.rstrip("\n"))
            if line.startswith("[2] tool_call"):
                break
        assert seen and seen[-1].startswith("[2] tool_call"), seen
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err
    lines = out.splitlines()
    assert f"cancelling run {SLOW_RUN_ID}…" in lines, err
    assert "status: CANCELLED" in lines, err
    assert lines[-1] == "cancelled"
    assert [(c.run_id, c.mode) for c in fake.calls.cancels] == [(SLOW_RUN_ID, ex_pb2.CANCEL_MODE_IMMEDIATE)]
