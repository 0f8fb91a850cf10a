"""Durable mode with real replicas: ExecutionService processes on one PostgreSQL database, a RunsService, the fake
Gemini and the stdio MCP test server. A replica SIGKILLed mid-run: its run completes on a survivor (takeover) or on
itself when it restarts, without repeating a completed model or tool call; a client watching the dead replica goes
on through another with WatchRun(from_sequence) and sees every step once, in order; CancelRun through another
replica stops the in-flight tool call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, function_results_in
from tests.support.replicas import Cluster, Replica, execution_database, running_cluster
from tests.support.stack import agent_source, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

AGENTS = {
    "worker": agent_source(
        model="gemini-2.5-flash",
        tools=["test/echo", "test/sleep"],
        limits={"tool_timeout": "60s", "run_timeout": "300s"},
    )
}


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


def two_tools_then_answer(sleep_s: float) -> Any:
    """Turn 1 calls echo, turn 2 calls sleep(sleep_s), turn 3 answers: decided by the results the request carries,
    so a repeated model call would show up as a fourth request."""

    def respond(body: dict[str, Any]) -> FakeResponse:
        results = function_results_in(body)
        if results == 0:
            return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "first"})])
        if results == 1:
            return FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": sleep_s})])
        return FakeResponse(text="all done")

    return respond


async def sleep_in_flight(cluster: Cluster) -> None:
    """Waits until the MCP server received the sleep call (it is then in flight, not merely announced)."""
    await wait_for(lambda: any(call["tool"] == "sleep" for call in cluster.calls()), timeout_s=30)


# The replica that took each run from the shared queue (any replica with a free slot may), from its RunStarted.
executors: dict[str, str] = {}


def executor_and_others(run_id: str, *replicas: Replica) -> tuple[Replica, list[Replica]]:
    """The replica executing the run, and the others."""
    executor = next(r for r in replicas if r.name == executors[run_id])
    return executor, [r for r in replicas if r is not executor]


def kind(event: Any) -> str:
    which = event.WhichOneof("event")
    return event.step.WhichOneof("payload") if which == "step" else which


async def until_sleep_started(
    events: AsyncIterator[ex.ExecuteAgentResponse],
) -> tuple[str, list[run_pb2.ExecutionStep]]:
    """Reads a run's stream until its sleep tool call started: (run id, the steps seen)."""
    run_id, steps = "", []
    async for event in events:
        if event.WhichOneof("event") == "run_started":
            run_id = event.run_started.run_id
            executors[run_id] = event.run_started.replica
        elif event.WhichOneof("event") == "step":
            steps.append(event.step)
            if event.step.WhichOneof("payload") == "tool_call" and event.step.tool_call.tool_name == "sleep":
                return run_id, steps
    raise AssertionError(f"the run ended before its sleep call: {steps}")


async def run_until_sleep_in_flight(
    cluster: Cluster, replica: Replica, *, detach: bool = True
) -> tuple[Any, str, list[run_pb2.ExecutionStep]]:
    """Starts a worker run through `replica` and reads its stream until its sleep call is in flight at the MCP
    server: (the ExecuteAgent call, run id, the steps seen)."""
    stream = cluster.stub(replica).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=detach))
    run_id, seen = await until_sleep_started(stream)
    await sleep_in_flight(cluster)
    return stream, run_id, seen


async def watch_rest(cluster: Cluster, replica: Any, run_id: str, from_sequence: int) -> list[ex.WatchRunResponse]:
    stub = cluster.stub(replica)
    return [e async for e in stub.WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=from_sequence))]


def assert_exactly_once_in_order(seen: list[run_pb2.ExecutionStep], stored: run_pb2.Run) -> None:
    assert [s.sequence for s in seen] == list(range(1, len(seen) + 1))
    assert [s.SerializeToString(deterministic=True) for s in seen] == [
        s.SerializeToString(deterministic=True) for s in stored.execution_steps
    ]


async def test_a_killed_replicas_run_completes_on_one_survivor(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(
        tmp_path,
        database_url,
        AGENTS,
        AGENTRUN_HEARTBEAT_INTERVAL_S="0.5",
        AGENTRUN_TAKEOVER_TIMEOUT_S="3",
        # The queue's own timer far away: the survivor polls at once because the takeover woke it.
        AGENTRUN_QUEUE_POLLING_INTERVAL_S="30",
    ) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=3.0))
        a = await cluster.start_replica("replica-a")
        b = await cluster.start_replica("replica-b")
        c = await cluster.start_replica("replica-c")
        _stream, run_id, seen = await run_until_sleep_in_flight(cluster, a)
        # The run executes where the shared queue put it (any of the three): that replica dies.
        dead, survivors = executor_and_others(run_id, a, b, c)
        dead.kill()
        killed_at = time.monotonic()

        # The client watching the dead replica goes on through a survivor from the next step.
        rest = await watch_rest(cluster, survivors[0], run_id, seen[-1].sequence + 1)
        assert kind(rest[0]) == "run_started" and rest[0].run_started.replica == dead.name
        assert kind(rest[-1]) == "run_finished"
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        later = [e.step for e in rest if e.WhichOneof("event") == "step"]
        assert [s.WhichOneof("payload") for s in later] == ["resumed", "tool_result", "model_call", "final_response"]
        resumed = later[0].resumed
        assert resumed.previous_replica == dead.name and resumed.replica in [r.name for r in survivors]
        # Exactly one survivor took the dead replica's runs over.
        takeovers = [r.name for r in survivors if "took over the runs of a silent replica" in r.log()]
        assert len(takeovers) == 1, takeovers
        assert 3 <= resumed.gap.seconds < 20  # not before the takeover timeout, nor at the queue's 30 s timer
        assert time.monotonic() - killed_at < 60

        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED and stored.final_response == "all done"
        assert_exactly_once_in_order(seen + later, stored)
        # The start time (when the run left the shared queue) is the first execution's, replayed by the survivor.
        assert stored.start_time == rest[0].run_started.start_time
        # No completed model call was made again: 3 turns, 3 requests.
        assert len(cluster.gemini.requests) == 3
        # The completed echo ran once; the sleep in flight at the kill ran again, with the same idempotency key.
        calls = cluster.calls()
        assert [c["tool"] for c in calls] == ["echo", "sleep", "sleep"]
        sleep_call = next(
            s.tool_call for s in seen if s.WhichOneof("payload") == "tool_call" and s.tool_call.tool_name == "sleep"
        )
        assert calls[1]["idempotency_key"] == calls[2]["idempotency_key"] == f"{run_id}:{sleep_call.call_id}"
        assert calls[1]["pid"] != calls[2]["pid"]


@pytest.mark.parametrize("mode", [ex.CANCEL_MODE_IMMEDIATE, ex.CANCEL_MODE_AFTER_TURN])
async def test_a_run_cancelled_while_its_replica_is_dead_ends_cancelled_when_taken_over(
    tmp_path: Path, database_url: str, mode: ex.CancelMode
) -> None:
    """CancelRun through a survivor of a run whose replica was just SIGKILLed: stored, and applied by the replica
    that takes the run over once its replay caught up (found by an outside audit: applied before the replay, the
    cancel's step took a replayed step's place and the run ended FAILED, DURABLE_REPLAY_DIVERGED)."""
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="3"
    ) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=2.0))
        a = await cluster.start_replica("replica-k1")
        b = await cluster.start_replica("replica-k2")
        stream, run_id, seen = await run_until_sleep_in_flight(cluster, a)
        dead, (survivor,) = executor_and_others(run_id, a, b)
        dead.kill()
        stream.cancel()
        await cluster.stub(survivor).CancelRun(ex.CancelRunRequest(run_id=run_id, mode=mode), timeout=60)

        rest = await watch_rest(cluster, survivor, run_id, seen[-1].sequence + 1)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED, rest[-1]
        later = [e.step.WhichOneof("payload") for e in rest if e.WhichOneof("event") == "step"]
        assert later[0] == "resumed" and later[-1] == "error", later
        # The sleep in flight at the kill has its result: CANCELLED (not made again), or done (AFTER_TURN).
        assert later.count("tool_result") == 1, later
        assert "model_call" not in later  # no model call after the cancel (AFTER_TURN: the turn in flight ends)
        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED
        assert "DURABLE_REPLAY_DIVERGED" not in survivor.log()
        assert len(cluster.gemini.requests) == 2


@pytest.mark.parametrize("mode", [ex.CANCEL_MODE_IMMEDIATE, ex.CANCEL_MODE_AFTER_TURN])
async def test_a_run_cancelled_through_its_replica_stays_cancelled_when_that_replica_dies(
    tmp_path: Path, database_url: str, mode: ex.CancelMode
) -> None:
    """CancelRun through the replica that runs the run (OK), then that replica SIGKILLed before the run's end is
    recorded (RunsService is down, so the end waits for it): the survivor ends the run CANCELLED, without calling
    the model again. Before: the cancel lived in the dead replica's memory only; the survivor ran the run again from
    its checkpoints (IMMEDIATE: the cancelled sleep again, a third model call, then FAILED/INTERNAL; AFTER_TURN:
    COMPLETED)."""
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="3"
    ) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=4.0))
        a = await cluster.start_replica("replica-x1")
        b = await cluster.start_replica("replica-x2")
        stream, run_id, seen = await run_until_sleep_in_flight(cluster, a)
        executor, (survivor,) = executor_and_others(run_id, a, b)
        await cluster.stop_runs()
        await cluster.stub(executor).CancelRun(ex.CancelRunRequest(run_id=run_id, mode=mode), timeout=60)
        if mode == ex.CANCEL_MODE_IMMEDIATE:  # killed once the run ended CANCELLED and waits for RunsService
            async for event in stream:
                if kind(event) == "error":
                    break
        executor.kill()  # AFTER_TURN: within the turn (the sleep in flight), the cancel stored but not yet applied
        stream.cancel()
        await cluster.start_runs()

        rest = await watch_rest(cluster, survivor, run_id, seen[-1].sequence + 1)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED, rest[-1]
        later = [kind(e) for e in rest if e.WhichOneof("event") == "step"]
        assert later.count("tool_result") == 1 and later[-1] == "error", later
        assert "model_call" not in later, later
        assert len(cluster.gemini.requests) == 2
        # IMMEDIATE: the cancelled sleep is not made again; AFTER_TURN: the sleep in flight at the kill is (its turn).
        again = ["sleep"] if mode == ex.CANCEL_MODE_AFTER_TURN else []
        assert [c["tool"] for c in cluster.calls()] == ["echo", "sleep", *again]
        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED
        assert_exactly_once_in_order(seen + [e.step for e in rest if e.WhichOneof("event") == "step"], stored)
        assert "run failed unexpectedly" not in survivor.log()


async def test_a_restarted_replica_resumes_its_runs(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=2.0))
        a = await cluster.start_replica("replica-r")
        _stream, run_id, seen = await run_until_sleep_in_flight(cluster, a)
        a.kill()
        again = await cluster.start_replica("replica-r", port=a.port)
        rest = await watch_rest(cluster, again, run_id, seen[-1].sequence + 1)
        later = [e.step for e in rest if e.WhichOneof("event") == "step"]
        assert later[0].WhichOneof("payload") == "resumed"
        assert (later[0].resumed.replica, later[0].resumed.previous_replica) == ("replica-r", "replica-r")
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        stored = await cluster.stored_run(run_id)
        assert_exactly_once_in_order(seen + later, stored)
        assert len(cluster.gemini.requests) == 3
        assert [c["tool"] for c in cluster.calls()] == ["echo", "sleep", "sleep"]


async def test_cancel_and_watch_through_another_replica(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=60.0))
        a = await cluster.start_replica("replica-c1")
        b = await cluster.start_replica("replica-c2")
        stream, run_id, seen = await run_until_sleep_in_flight(cluster, a, detach=False)
        # b: the replica that does not execute the run (the shared queue gave it to either).
        executor, (b,) = executor_and_others(run_id, a, b)

        # Any replica serves the run: watching it through b from step 2 shows what a streamed, then follows.
        watch = cluster.stub(b).WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=2))
        first = [await watch.read() for _ in range(len(seen))]  # RunStarted, then steps 2..
        assert kind(first[0]) == "run_started"
        assert [e.step for e in first[1:]] == seen[1:]

        # ExecuteAgent retried with the run's id on another replica follows the run (an idempotent retry).
        retried = cluster.stub(b).ExecuteAgent(
            ex.ExecuteAgentRequest(agent_name="worker", task="go", run_id=run_id, detach=True)
        )
        again = await retried.read()
        assert again.run_started.run_id == run_id and again.run_started.replica == executor.name
        assert (await retried.read()).step == seen[0]
        retried.cancel()
        # The same id for another agent is no retry: refused on the other replica too, nothing started.
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            async for _ in cluster.stub(b).ExecuteAgent(
                ex.ExecuteAgentRequest(agent_name="no-such-agent", task="another", run_id=run_id)
            ):
                pass
        assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
        # Nor for the same agent with another task (read from the run's workflow input on the other replica).
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            async for _ in cluster.stub(b).ExecuteAgent(
                ex.ExecuteAgentRequest(agent_name="worker", task="something else", run_id=run_id)
            ):
                pass
        assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS

        # A watcher asking for steps past where the run will end gets its end all the same (it hung on a replica
        # reading the run's stream, waiting for a step that never comes).
        beyond = cluster.stub(b).WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=99), timeout=60)
        assert kind(await beyond.read()) == "run_started"

        asked = time.monotonic()
        await cluster.stub(b).CancelRun(ex.CancelRunRequest(run_id=run_id))
        rest = [event async for event in stream]
        stopped_in = time.monotonic() - asked
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED
        assert stopped_in < 5, f"the in-flight tool call took {stopped_in:.1f} s to stop"  # 1 s goal, loaded machine
        result = next(e.step.tool_result for e in rest if kind(e) == "tool_result")
        assert result.status == run_pb2.TOOL_CALL_STATUS_CANCELLED
        watched = []
        while (message := await watch.read()) is not grpc.aio.EOF:
            watched.append(message)
        assert kind(watched[-1]) == "run_finished"
        assert [e.step for e in watched[:-1]] == [e.step for e in rest[:-1]]
        stored = await cluster.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED
        assert_exactly_once_in_order(seen + [e.step for e in rest if kind(e) != "run_finished"], stored)
        ended = []
        while (message := await beyond.read()) is not grpc.aio.EOF:
            ended.append(message)
        assert [kind(e) for e in ended] == ["run_finished"] and ended[0].run_finished.status == stored.status
        # And once it ended, through either replica: RunStarted and RunFinished at once.
        for replica in (executor, b):
            past = cluster.stub(replica).WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=99), timeout=10)
            assert [kind(e) async for e in past] == ["run_started", "run_finished"], replica.name

        # A finished run cannot be cancelled again, through either replica.
        for replica in (executor, b):
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await cluster.stub(replica).CancelRun(ex.CancelRunRequest(run_id=run_id))
            assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "already finished with status CANCELLED" in (error.value.details() or "")


async def test_a_cancel_through_another_replica_says_whether_it_took_effect(tmp_path: Path, database_url: str) -> None:
    """CancelRun through a replica that does not run the run, sent once the run's answer came (its outcome decided,
    its end still being recorded: RunsService is down, so the record waits): FAILED_PRECONDITION naming COMPLETED,
    as on the replica that runs it, not OK for a run that then ends COMPLETED (found by an outside audit). And a
    cancel that does stop the run still answers OK."""
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        a = await cluster.start_replica("replica-d1")
        b = await cluster.start_replica("replica-d2")

        cluster.gemini.set_responder(lambda body: FakeResponse(text="the answer"))
        await cluster.stop_runs()
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="answer"), timeout=120)
        run_id, other = "", None
        async for event in stream:
            if event.WhichOneof("event") == "run_started":
                run_id = event.run_started.run_id
                executors[run_id] = event.run_started.replica
                _, (other,) = executor_and_others(run_id, a, b)
            elif kind(event) == "final_response":
                break
        assert other is not None
        with pytest.raises(grpc.aio.AioRpcError) as too_late:
            await cluster.stub(other).CancelRun(ex.CancelRunRequest(run_id=run_id), timeout=60)
        assert too_late.value.code() == grpc.StatusCode.FAILED_PRECONDITION, too_late.value
        assert "already finished with status COMPLETED" in (too_late.value.details() or ""), too_late.value
        rest = [event async for event in stream]
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        await cluster.start_runs()
        assert (await cluster.stored_run(run_id)).status == run_pb2.RUN_STATUS_COMPLETED

        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=60.0))
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go"), timeout=120)
        run_id, _ = await until_sleep_started(stream)
        _, (other,) = executor_and_others(run_id, a, b)
        await cluster.stub(other).CancelRun(ex.CancelRunRequest(run_id=run_id), timeout=60)
        rest = [event async for event in stream]
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_CANCELLED
        assert (await cluster.stored_run(run_id)).status == run_pb2.RUN_STATUS_CANCELLED


async def test_a_cancel_of_a_run_whose_replica_died_after_deciding_its_end_names_that_end(
    tmp_path: Path, database_url: str
) -> None:
    """The replica running the run got its answer and died while the run's end waited for RunsService: CancelRun
    through the survivor is FAILED_PRECONDITION naming COMPLETED (the end was decided and checkpointed: the survivor
    records it), not OK for a run that then ends COMPLETED (found by an outside audit). The takeover comes after the
    cancel's wait for the run's end."""
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="8"
    ) as cluster:
        cluster.gemini.set_responder(lambda body: FakeResponse(text="the answer"))
        a = await cluster.start_replica("replica-e1")
        b = await cluster.start_replica("replica-e2")
        await cluster.stop_runs()
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="answer", detach=True))
        run_id = ""
        async for event in stream:
            if event.WhichOneof("event") == "run_started":
                run_id = event.run_started.run_id
                executors[run_id] = event.run_started.replica
            elif kind(event) == "final_response":
                break
        executor, (survivor,) = executor_and_others(run_id, a, b)
        await asyncio.sleep(0.5)  # its end is checkpointed at once, then waits up to 2 s for RunsService
        executor.kill()
        stream.cancel()
        with pytest.raises(grpc.aio.AioRpcError) as too_late:
            await cluster.stub(survivor).CancelRun(ex.CancelRunRequest(run_id=run_id), timeout=60)
        assert too_late.value.code() == grpc.StatusCode.FAILED_PRECONDITION, too_late.value
        assert "already finished with status COMPLETED" in (too_late.value.details() or ""), too_late.value
        await cluster.start_runs()
        rest = await watch_rest(cluster, survivor, run_id, 2)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        stored = await cluster.stored_run(run_id)
        assert (stored.status, stored.final_response) == (run_pb2.RUN_STATUS_COMPLETED, "the answer")
        assert len(cluster.gemini.requests) == 1


async def test_a_stopping_replica_does_not_cancel_the_runs_its_clients_follow_on_another(
    tmp_path: Path, database_url: str
) -> None:
    """A client (not detached) watching through a replica that does not run the run: that replica stopping (SIGTERM)
    ends the client's stream, and the run goes on where it runs."""
    async with running_cluster(tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5") as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=2.0))
        a = await cluster.start_replica("replica-f1", AGENTRUN_SHUTDOWN_GRACE_S="0.5")
        b = await cluster.start_replica("replica-f2", AGENTRUN_SHUTDOWN_GRACE_S="0.5")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
        run_id, seen = await until_sleep_started(stream)
        executor, (other,) = executor_and_others(run_id, a, b)
        watch = cluster.stub(other).ExecuteAgent(
            ex.ExecuteAgentRequest(agent_name="worker", task="go", run_id=run_id)  # a retry: follows, not detached
        )
        assert (await watch.read()).run_started.run_id == run_id
        other.stop()
        rest = await watch_rest(cluster, executor, run_id, seen[-1].sequence + 1)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED, rest[-1]
        assert (await cluster.stored_run(run_id)).status == run_pb2.RUN_STATUS_COMPLETED


@pytest.mark.parametrize("detach", [True, False])
async def test_a_stopping_replica_hands_its_runs_over_at_once(tmp_path: Path, database_url: str, detach: bool) -> None:
    """SIGTERM: the replica lets its runs go on for the shutdown grace, then leaves them pending and marks itself
    silent; a survivor takes them over without waiting for the takeover timeout. A client whose stream the stopping
    replica ends (not detached) does not cancel the run: it goes on elsewhere (the client watches it there)."""
    async with running_cluster(tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5") as cluster:
        cluster.gemini.set_responder(two_tools_then_answer(sleep_s=3.0))
        a = await cluster.start_replica("replica-d1", AGENTRUN_SHUTDOWN_GRACE_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="30")
        b = await cluster.start_replica("replica-d2", AGENTRUN_SHUTDOWN_GRACE_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="30")
        _stream, run_id, seen = await run_until_sleep_in_flight(cluster, a, detach=detach)
        stopping, (survivor,) = executor_and_others(run_id, a, b)
        stopped_at = time.monotonic()
        stopping.stop()
        rest = await watch_rest(cluster, survivor, run_id, seen[-1].sequence + 1)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert time.monotonic() - stopped_at < 25  # well before the 30 s takeover timeout
        later = [e.step for e in rest if e.WhichOneof("event") == "step"]
        assert later[0].resumed.previous_replica == stopping.name and later[0].resumed.replica == survivor.name
        stored = await cluster.stored_run(run_id)
        assert_exactly_once_in_order(seen + later, stored)
        assert len(cluster.gemini.requests) == 3
