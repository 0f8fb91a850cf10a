"""The shared queue over replica processes (durable mode), mostly one run executing at a time over all of them
(AGENTRUN_GLOBAL_MAX_CONCURRENT_RUNS=1): a run queued through one replica is watched and cancelled through another
(it ends CANCELLED at once, without a model call); a queued run outlives the replica that started it (SIGKILL) and
runs on the survivor; a run entering a replica whose slots are full starts at once on another (woken by NOTIFY),
where its client's disconnect cancels it. The queue's timer is 30 s: every start is a replica woken."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeResponse
from tests.support.replicas import Cluster, Replica, execution_database, running_cluster
from tests.support.stack import agent_source

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = {"worker": agent_source(model="gemini-2.5-flash")}
# Nothing but wakes: a replica polls the queue on its own only every 30 s (durable.queue_wakeups), so every prompt
# start below is a replica woken by a run entering (on it, or on another: NOTIFY), a slot freeing or a cancel.
WAKES_ONLY = {"AGENTRUN_QUEUE_POLLING_INTERVAL_S": "30"}
ONE_AT_A_TIME = {"AGENTRUN_MAX_CONCURRENT_RUNS": "1", "AGENTRUN_GLOBAL_MAX_CONCURRENT_RUNS": "1", **WAKES_ONLY}
ONE_PER_REPLICA = {"AGENTRUN_MAX_CONCURRENT_RUNS": "1", **WAKES_ONLY}


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


class Hold:
    """The fake Gemini's answer to a task containing "hold" waits until `release` (the run holds the only slot)."""

    def __init__(self) -> None:
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    async def respond(self, body: dict[str, Any]) -> FakeResponse:
        if "hold" in str(body.get("contents", "")):
            await asyncio.to_thread(self._released.wait, 60)
        return FakeResponse(text="done")


def kind(event: Any) -> str:
    return event.WhichOneof("event") or ""


async def first(stream: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(anext(stream), 15)  # half the queue's timer: only a wake starts a run in time


async def rest(stream: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in stream]


async def hold_the_slot(cluster: Cluster, via: Replica, *replicas: Replica) -> tuple[AsyncIterator[Any], Replica]:
    """Starts a run that holds the only slot: its stream (at run_started) and the replica executing it."""
    stream = aiter(
        cluster.stub(via).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="hold", detach=True))
    )
    started = await first(stream)
    assert kind(started) == "run_started"
    return stream, next(r for r in replicas if r.name == started.run_started.replica)


async def test_a_queued_run_is_watched_and_cancelled_through_another_replica(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS, **ONE_AT_A_TIME) as cluster:
        hold = Hold()
        cluster.gemini.set_responder(hold.respond)
        a = await cluster.start_replica("queue-a")
        b = await cluster.start_replica("queue-b")
        holder, _ = await hold_the_slot(cluster, a, a, b)

        queued = aiter(cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="queued")))
        head = await first(queued)
        assert kind(head) == "run_queued"
        run_id = head.run_queued.run_id
        watch = aiter(cluster.stub(b).WatchRun(ex.WatchRunRequest(run_id=run_id)))
        assert (await first(watch)).SerializeToString() == head.SerializeToString()

        await cluster.stub(b).CancelRun(ex.CancelRunRequest(run_id=run_id))
        ended = await asyncio.wait_for(rest(queued), 10)  # while the slot is still held
        assert [kind(e) for e in ended] == ["step", "run_finished"]
        assert ended[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED
        assert [e.SerializeToString() for e in await rest(watch)] == [e.SerializeToString() for e in ended]
        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED and stored.steps_taken == 0
        assert len(cluster.gemini.requests) == 1  # the holder's call only

        hold.release()
        assert (await rest(holder))[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED


async def test_a_queued_run_outlives_the_replica_that_started_it(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS, **ONE_AT_A_TIME) as cluster:
        hold = Hold()
        cluster.gemini.set_responder(hold.respond)
        a = await cluster.start_replica("outlive-a")
        b = await cluster.start_replica("outlive-b")
        _, executor = await hold_the_slot(cluster, a, a, b)
        (starter,) = [r for r in (a, b) if r is not executor]

        queued = aiter(cluster.stub(starter).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="later")))
        head = await first(queued)
        assert kind(head) == "run_queued"
        starter.kill()

        hold.release()  # the holder (its stream may have gone with the starter) ends; the queued run starts
        watched = await rest(cluster.stub(executor).WatchRun(ex.WatchRunRequest(run_id=head.run_queued.run_id)))
        assert [kind(e) for e in watched] == ["run_queued", "run_started", "step", "step", "run_finished"]
        assert watched[1].run_started.replica == executor.name
        assert watched[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        stored = await cluster.stored_run(head.run_queued.run_id)
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED and stored.HasField("queue_duration")


async def test_a_run_entering_a_full_replica_starts_at_once_on_another_where_its_disconnected_client_cancels_it(
    tmp_path: Path, database_url: str
) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS, **ONE_PER_REPLICA) as cluster:
        hold = Hold()
        cluster.gemini.set_responder(hold.respond)
        a = await cluster.start_replica("leave-a")
        b = await cluster.start_replica("leave-b")
        _, full = await hold_the_slot(cluster, a, a, b)
        (other,) = [r for r in (a, b) if r is not full]

        # The full replica cannot take the run; the other one hears of it (NOTIFY) and starts it at once.
        call = cluster.stub(full).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="hold"))
        events: AsyncIterator[Any] = aiter(call)
        started = await first(events)
        if kind(started) == "run_queued":  # QUEUED is a prediction: the module's earlier replicas may still count
            started = await first(events)
        assert kind(started) == "run_started"
        assert started.run_started.replica == other.name
        run_id = started.run_started.run_id
        call.cancel()  # the client goes away: its run, executing on the other replica, is cancelled

        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED
        assert "client disconnected: its run is cancelled" in full.log()
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await cluster.stub(other).CancelRun(ex.CancelRunRequest(run_id=run_id))
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        hold.release()
