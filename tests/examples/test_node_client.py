"""examples/clients/node/client.mjs, the Node.js client built from protos/ at run time, against the real services:
it runs an agent and reads the stored run back, and on an error prints the google.rpc details (ErrorInfo reason,
BadRequest field) it decodes from the grpc-status-details-bin trailer with the google/rpc protos shipped in
protos/. Skipped, with the reason, where Node.js or the example's dependencies (npm ci) are missing: installing them
would reach the network, which tests never do."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from tests.support.stack import Stack, agent_source, running_stack

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "clients" / "node"
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="Node.js is not installed"),
    pytest.mark.skipif(
        not (EXAMPLE / "node_modules" / "@grpc" / "proto-loader").is_dir(),
        reason="the Node example's dependencies are not installed: `make node-example` (cd examples/clients/node && "
        "npm ci)",
    ),
]


async def _client(stack: Stack, *args: str, cwd: Path = EXAMPLE, **env: str) -> tuple[int, str, str]:
    assert NODE is not None
    environ = {
        **os.environ,
        "AGENTRUN_EXECUTION_TARGET": stack.execution_address,
        "AGENTRUN_RUNS_TARGET": stack.runs_address,
        **env,
    }
    process = await asyncio.create_subprocess_exec(
        NODE, "client.mjs", *args, cwd=cwd, env=environ, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_node_client_runs_an_agent_and_prints_the_reason_of_errors(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"echoer": agent_source(tools=["test/echo"])}) as stack:
        code, out, err = await _client(stack, "echoer", "say hi")
        assert code == 0, err
        assert "finished: RUN_STATUS_COMPLETED" in out and "stored: RUN_STATUS_COMPLETED" in out, out

        code, _, err = await _client(stack, "no-such-agent", "hi")
        assert code == 1
        assert err.startswith("error: NOT_FOUND: agent 'no-such-agent' not found; available agents: echoer"), err
        assert "\n  reason: AGENT_NOT_FOUND (agentrun.dev)" in err, err

        code, _, err = await _client(stack, "echoer", " ")
        assert code == 1
        assert err.startswith("error: INVALID_ARGUMENT: task: must not be empty"), err
        assert "\n  reason: INVALID_ARGUMENT (agentrun.dev)\n  field: task" in err, err


async def test_the_node_client_copied_out_of_the_repository_finds_the_protos_it_is_given(tmp_path: Path) -> None:
    """A copy of the example as a project's starting point: AGENTRUN_PROTOS names the protos; AGENTRUN_MODEL picks
    the run's model (without it, the agent's own)."""
    copy = tmp_path / "my-client"
    copy.mkdir()
    shutil.copy(EXAMPLE / "client.mjs", copy / "client.mjs")
    (copy / "node_modules").symlink_to(EXAMPLE / "node_modules")
    agents = {"echoer": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}
    async with running_stack(tmp_path / "stack", agents) as stack:
        code, _, err = await _client(stack, "echoer", "say hi", cwd=copy)
        assert code == 2 and err.startswith("error: no agentrun protos in /"), err
        assert "set AGENTRUN_PROTOS" in err
        code, out, err = await _client(
            stack, "echoer", "say hi", cwd=copy, AGENTRUN_PROTOS=str(REPO / "protos"), AGENTRUN_MODEL="test"
        )
        assert code == 0, err
        assert "started (test)" in out and "stored: RUN_STATUS_COMPLETED" in out, out
