"""The web console in front of durable replicas: pointed at every replica (a gRPC target listing them, as
docs/deployment.md says), a live run's page goes on through another replica when the one the console talks to is
SIGKILLed mid-run, and gets every step once, in order, and the run's end."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from agentrun_web.server import start_console
from agentrun_web.settings import WebAuth, WebSettings
from tests.execution_service.durable.test_replicas import AGENTS, sleep_in_flight, two_tools_then_answer
from tests.fakes.gemini_server import FakeResponse, function_results_in
from tests.support.replicas import Cluster, execution_database, running_cluster
from tests.support.stack import free_port, wait_for
from tests.web.test_http import csrf_of

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


@asynccontextmanager
async def console_client(
    cluster: Cluster, execution_target: str, *, timeout_s: float
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a console (authentication off) in front of the cluster, reaching ExecutionService at
    `execution_target`; the console stops after the block."""
    console = await start_console(
        WebSettings(
            address="127.0.0.1:0",
            runs_target=cluster.runs_address,
            execution_target=execution_target,
            auth=WebAuth.OFF,
            log_format="text",
        )
    )
    try:
        async with httpx.AsyncClient(base_url=console.url.rstrip("/"), timeout=timeout_s) as client:
            yield client
    finally:
        await console.stop()


@dataclass(frozen=True)
class SseEvent:
    name: str
    data: dict[str, Any]
    event_id: int | None


async def sse_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """The server-sent events of a streamed response (comments and `retry:` left out)."""
    name, data, event_id = "", "", None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
        elif line.startswith("id: "):
            event_id = int(line.removeprefix("id: "))
        elif not line and name:
            yield SseEvent(name, json.loads(data), event_id)
            name, data, event_id = "", "", None


def gated_tools_then_answer(gate: threading.Event) -> Any:
    """Turn 1 calls echo; turn 2, once `gate` is set, calls sleep(3 s); turn 3 answers."""
    respond = two_tools_then_answer(sleep_s=3.0)

    async def gated(body: dict[str, Any]) -> FakeResponse:
        if function_results_in(body) == 1:
            assert await asyncio.to_thread(gate.wait, 60), "the test never opened the gate"
        return respond(body)

    return gated


class LivePage:
    """What a live run's page does with the console's event stream: reads it, and after a `problem` asks again from
    the step after the last one it has."""

    def __init__(self, client: httpx.AsyncClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.steps: list[SseEvent] = []
        self.problems: list[str] = []
        self.finished: SseEvent | None = None

    async def follow(self) -> None:
        next_sequence = 0
        while self.finished is None and len(self.problems) < 20:
            async with self.client.stream("GET", f"/runs/{self.run_id}/events?from={next_sequence}") as response:
                assert response.status_code == 200
                async for event in sse_events(response):
                    if event.name == "step":
                        assert event.event_id is not None
                        self.steps.append(event)
                        next_sequence = event.event_id + 1
                    elif event.name == "problem":
                        self.problems.append(event.data["message"])
                        break
                    elif event.name == "finished":
                        self.finished = event
                        break
                    elif event.name == "gone":
                        raise AssertionError(f"the console lost the run: {event.data}")
            if self.problems:
                await asyncio.sleep(0.2)


async def test_a_console_pointed_at_every_replica_follows_a_live_run_past_the_death_of_its_replica(
    tmp_path: Path, database_url: str
) -> None:
    async with running_cluster(
        tmp_path,
        database_url,
        AGENTS,
        AGENTRUN_HEARTBEAT_INTERVAL_S="0.5",
        AGENTRUN_TAKEOVER_TIMEOUT_S="3",
        AGENTRUN_QUEUE_POLLING_INTERVAL_S="30",
    ) as cluster:
        gate = threading.Event()
        cluster.gemini.set_responder(gated_tools_then_answer(gate))
        a = await cluster.start_replica("replica-a")
        b_port = free_port()
        # Every replica: while only replica-a serves, the console's calls go there (round_robin over the replicas
        # that answer, replica_channels); a stream stays on the replica it was opened on.
        async with console_client(cluster, f"ipv4:{a.address},127.0.0.1:{b_port}", timeout_s=60) as client:
            # The run starts, and the console connects, while replica-a is the only replica: both are on replica-a.
            stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
            started = await anext(aiter(stream))
            run_id = started.run_started.run_id
            assert started.run_started.replica == "replica-a"
            page = LivePage(client, run_id)
            following = asyncio.create_task(page.follow())
            await wait_for(lambda: len(page.steps) >= 3, timeout_s=30)  # echo's result: the run waits on turn 2

            b = await cluster.start_replica("replica-b", port=b_port)
            gate.set()
            await sleep_in_flight(cluster)
            a.kill()
            await asyncio.wait_for(following, 90)

        assert page.problems, "the console's stream did not go through the killed replica"
        assert page.finished is not None
        assert page.finished.data["status"] == "COMPLETED"
        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED
        # Every step the run stored reached the page once, in order, the resumption on replica-b among them.
        assert [s.event_id for s in page.steps] == [s.sequence for s in stored.execution_steps]
        resumed = [s for s in stored.execution_steps if s.WhichOneof("payload") == "resumed"]
        assert [r.resumed.replica for r in resumed] == [b.name]


async def test_the_start_form_starts_runs_elsewhere_while_the_console_s_replica_drains(
    tmp_path: Path, database_url: str
) -> None:
    """Found by an outside audit: the console stayed on a draining replica (SIGTERM: it refuses new runs for its
    whole grace) and answered every start with 503 "retry on another instance", while the other replica served."""
    async with running_cluster(tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5") as cluster:
        gate = threading.Event()  # holds replica-a's run on its second turn: the drain lasts its whole grace
        cluster.gemini.set_responder(gated_tools_then_answer(gate))
        a = await cluster.start_replica("replica-a", AGENTRUN_SHUTDOWN_GRACE_S="30")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
        assert (await anext(aiter(stream))).run_started.replica == "replica-a"
        b = await cluster.start_replica("replica-b")
        try:
            async with console_client(cluster, f"ipv4:{a.address},{b.address}", timeout_s=30) as client:
                a.process.send_signal(signal.SIGTERM)  # replica-a drains: NOT_SERVING, refuses new runs
                await asyncio.sleep(1.0)
                assert a.process.poll() is None, "replica-a should still be draining"
                started: list[str] = []
                for task in ("first", "second", "third"):
                    form = await client.get("/start?agent=worker")
                    field = re.search(r'name="run_id" value="([0-9a-f-]{36})"', form.text)
                    assert field is not None
                    data = {"csrf_token": csrf_of(form.text), "agent": "worker", "task": task, "run_id": field[1]}
                    sent = await client.post("/start", data=data)
                    assert sent.status_code == 303, sent.text[:2000]
                    started.append(field[1])
            assert a.process.poll() is None, "replica-a should still be draining"
            gate.set()
            for run_id in started:
                stored = await cluster.stored_run(run_id)
                assert stored.status == run_pb2.RUN_STATUS_COMPLETED
        finally:
            gate.set()
