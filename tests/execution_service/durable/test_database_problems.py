"""An execution database that cannot be used at start-up, tried as a new user would with the real command as a
subprocess: one log line naming the URL (password masked), the cause and the fix, exit code 4 (docs/configuration.md),
never a traceback, as RunsService reports its own database. And one that stops while a run is in flight."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from sqlalchemy.engine import make_url

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse
from tests.runs_service.test_database_problems import _closed_port, _command, _error_line
from tests.support.postgres import start_throwaway_cluster
from tests.support.stack import agent_source, running_stack, steps_of

pytestmark = pytest.mark.postgres

PASSWORD = "hunter2-not-echoed"


def _execution(tmp_path: Path, url: str) -> tuple[int, str, str]:
    done = _command(tmp_path, "--execution-database-url", url, "--address", "127.0.0.1:0", module="execution_service")
    return done.returncode, _error_line(done), done.stdout + done.stderr


def test_a_missing_execution_database_is_exit_4_naming_createdb(tmp_path: Path, database_url: str) -> None:
    name = f"agentrun_missing_{uuid.uuid4().hex[:10]}"
    url = make_url(database_url).set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    code, line, output = _execution(tmp_path, url)
    assert code == 4, output
    assert "refusing to start: cannot use the execution database postgresql://" in line, line
    assert f'the database "{name}" does not exist' in line and "create it with `createdb " in line, line
    assert name in line.split("createdb", 1)[1], line
    assert "--create-database" not in line  # ExecutionService has no such flag


def test_an_unreachable_execution_database_is_exit_4_naming_the_address_without_the_password(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://agentrun:{PASSWORD}@127.0.0.1:{port}/agentrun"
    started = time.monotonic()
    code, line, output = _execution(tmp_path, url)
    assert code == 4, output
    assert f"cannot use the execution database postgresql://agentrun:***@127.0.0.1:{port}/agentrun" in line, line
    assert f"no PostgreSQL server answers at 127.0.0.1:{port}" in line, line
    assert "AGENTRUN_EXECUTION_DATABASE_URL / --execution-database-url" in line, line
    assert PASSWORD not in output
    assert time.monotonic() - started < 60


async def test_a_run_in_flight_outlives_an_outage_of_the_execution_database(tmp_path: Path) -> None:
    """The execution database stops for a few seconds while a durable run is in a tool call: the run waits for it
    (its journal's writes are tried again) and completes, every step once, streamed and stored."""
    cluster = start_throwaway_cluster()
    try:
        url = cluster.create_database(prefix="agentrun_outage")
        agents = {"worker": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
        async with running_stack(tmp_path, agents, execution_database_url=url, replica_id="outage") as stack:
            stack.gemini.add(
                FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": 1.5})]), FakeResponse(text="done")
            )
            events: list[ex.ExecuteAgentResponse] = []
            stream = stack.execution_stub().ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go"))
            async for event in stream:
                events.append(event)
                if event.WhichOneof("event") == "step" and event.step.WhichOneof("payload") == "tool_call":
                    break
            await asyncio.to_thread(cluster.halt)  # during the tool call
            await asyncio.sleep(4)
            await asyncio.to_thread(cluster.resume)
            events += [event async for event in stream]
            finished = events[-1].run_finished
            assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished
            stored = await stack.stored_run(finished.run_id)
        assert [s.sequence for s in stored.execution_steps] == [s.sequence for s in steps_of(events)] == [1, 2, 3, 4, 5]
        assert [s.WhichOneof("payload") for s in stored.execution_steps] == [
            "model_call",
            "tool_call",
            "tool_result",
            "model_call",
            "final_response",
        ]
    finally:
        cluster.stop()
