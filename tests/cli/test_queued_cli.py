"""The CLI with a run that waits in ExecutionService's admission queue (issue 10 §5): `agentrun run` shows it queued,
then started; `runs list --status queued` and `runs show` show it QUEUED while it waits. Real services, the real
`agentrun` command as a subprocess."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.support.model_gate import Gate
from tests.support.stack import Stack, agent_source, running_stack

AGENTRUN = str(Path(sys.executable).parent / "agentrun")


async def agentrun(stack: Stack, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        AGENTRUN,
        "--runs-target",
        stack.runs_address,
        "--execution-target",
        stack.execution_address,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": str(Path(sys.executable).parent)},
    )


async def output_of(stack: Stack, *args: str) -> str:
    process = await agentrun(stack, *args)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()
    return stdout.decode()


async def test_run_and_runs_list_show_a_queued_run(tmp_path: Path) -> None:
    gate = Gate()
    agents = {"worker": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents, max_concurrent_runs=1) as stack:
        stack.gemini.set_responder(gate.respond)
        holder = aiter(stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="wait")))
        assert (await anext(holder)).WhichOneof("event") == "run_started"

        run = await agentrun(stack, "run", "worker", "then me")
        runs = stack.runs_stub()
        queued: list[run_pb2.Run] = []
        for _ in range(300):
            await stack.execution.flush_outbox(5.0)
            queued = list((await runs.ListRuns(rs.ListRunsRequest(filter="status = QUEUED"))).runs)
            if queued:
                break
            await asyncio.sleep(0.1)
        assert len(queued) == 1
        run_id = queued[0].id

        listed = await output_of(stack, "runs", "list", "--status", "queued")
        assert "QUEUED" in listed and run_id[-8:] in listed
        shown = await output_of(stack, "runs", "show", run_id)
        assert "QUEUED" in shown and "in the queue before start" in shown
        assert "cost pending" in shown and "no price" not in shown  # gemini-2.5-flash has one: known at the end

        gate.open()
        stdout, stderr = await asyncio.wait_for(run.communicate(), 60)
        assert run.returncode == 0, stderr.decode()
        lines = stdout.decode().splitlines()
        assert lines[0].startswith(f"⏸ run {run_id} · worker") and "queued · position 1 in embedded" in lines[0]
        assert lines[1].startswith(f"▶ run {run_id} · worker")
        assert "status: COMPLETED" in lines
        shown = await output_of(stack, "runs", "show", run_id)
        assert "COMPLETED" in shown and "in the queue before start" in shown
        async for _ in holder:
            pass
