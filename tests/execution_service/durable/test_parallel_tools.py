"""Durable mode with a real replica: the tool calls of one model turn run concurrently (as in the embedded mode), and
a replica killed mid-turn does not call again the turn's call that completed, only the one in flight."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.execution_service.durable.test_replicas import AGENTS, assert_exactly_once_in_order, watch_rest
from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, function_results_in
from tests.support.replicas import running_cluster
from tests.support.stack import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]


def one_turn_of(*calls: FakeFunctionCall) -> Any:
    """Turn 1 asks for `calls` at once; turn 2 answers."""

    def respond(body: dict[str, Any]) -> FakeResponse:
        answered = function_results_in(body) > 0
        return FakeResponse(text="all done") if answered else FakeResponse(function_calls=list(calls))

    return respond


async def steps_until(stream: Any, done: Callable[[list[run_pb2.ExecutionStep]], bool]) -> tuple[str, list[Any]]:
    """The run's id and its steps streamed until `done(steps)` holds (the stream is left open)."""
    run_id, seen = "", []
    async for event in stream:
        if event.WhichOneof("event") == "run_started":
            run_id = event.run_started.run_id
        elif event.WhichOneof("event") == "step":
            seen.append(event.step)
            if done(seen):
                break
    return run_id, seen


async def test_the_tool_calls_of_one_turn_overlap_in_durable_mode(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        cluster.gemini.set_responder(
            one_turn_of(FakeFunctionCall("sleep", {"seconds": 4.0}), FakeFunctionCall("sleep", {"seconds": 4.5}))
        )
        replica = await cluster.start_replica("replica-p")
        events = [
            e async for e in cluster.stub(replica).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go"))
        ]
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        calls = cluster.calls()
        assert sorted(c["arguments"]["seconds"] for c in calls) == [4.0, 4.5]
        # One after another, the second would start 4 s after the first: they ran at the same time.
        assert abs(calls[1]["at"] - calls[0]["at"]) < 2.0, calls
        stored = await cluster.stored_run(events[0].run_started.run_id)
        kinds = [s.WhichOneof("payload") for s in stored.execution_steps]
        assert kinds == [
            "model_call",
            "tool_call",
            "tool_call",
            "tool_result",
            "tool_result",
            "model_call",
            "final_response",
        ]
        assert len(cluster.gemini.requests) == 2


async def test_a_replica_killed_mid_turn_does_not_repeat_the_turns_completed_call(
    tmp_path: Path, database_url: str
) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        # The sleep comes first: run one after another, the echo would start only once the sleep is over.
        cluster.gemini.set_responder(
            one_turn_of(FakeFunctionCall("sleep", {"seconds": 3.0}), FakeFunctionCall("echo", {"text": "quick"}))
        )
        a = await cluster.start_replica("replica-k")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
        run_id, seen = await steps_until(
            stream,
            lambda steps: (
                steps[-1].WhichOneof("payload") == "tool_result" and steps[-1].tool_result.tool_name == "echo"
            ),
        )
        await wait_for(lambda: sorted(c["tool"] for c in cluster.calls()) == ["echo", "sleep"], timeout_s=30)
        a.kill()  # the echo completed, the sleep is in flight
        assert [s.WhichOneof("payload") for s in seen] == ["model_call", "tool_call", "tool_call", "tool_result"]

        again = await cluster.start_replica("replica-k", port=a.port)
        rest = await watch_rest(cluster, again, run_id, seen[-1].sequence + 1)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        later = [e.step for e in rest if e.WhichOneof("event") == "step"]
        assert [s.WhichOneof("payload") for s in later] == ["resumed", "tool_result", "model_call", "final_response"]
        assert later[1].tool_result.tool_name == "sleep"
        stored = await cluster.stored_run(run_id)
        assert_exactly_once_in_order(seen + later, stored)
        # The completed echo was not called again; the sleep in flight was, with the same idempotency key.
        calls = cluster.calls()
        assert sorted(c["tool"] for c in calls[:2]) == ["echo", "sleep"] and calls[2]["tool"] == "sleep"
        sleeps = [c for c in calls if c["tool"] == "sleep"]
        assert sleeps[0]["idempotency_key"] == sleeps[1]["idempotency_key"] and sleeps[0]["pid"] != sleeps[1]["pid"]
        assert len(cluster.gemini.requests) == 2


async def test_a_turn_with_more_calls_than_run_at_once_replays_after_a_crash_in_a_later_turn(
    tmp_path: Path, database_url: str
) -> None:
    """Two calls at most at once, three in turn 1: the third starts when a result frees a slot, so the stream holds
    the turn's steps in an order that its checkpointed results, coming back at once, need not follow on a resumption
    (it ended DURABLE_REPLAY_DIVERGED)."""

    def respond(body: dict[str, Any]) -> FakeResponse:
        answered = function_results_in(body)
        if answered == 0:
            return FakeResponse(
                function_calls=[
                    FakeFunctionCall("sleep", {"seconds": 0.6}),
                    FakeFunctionCall("echo", {"text": "a"}),
                    FakeFunctionCall("echo", {"text": "b"}),
                ]
            )
        if answered == 3:
            return FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": 5.0})])
        return FakeResponse(text="all done")

    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        cluster.gemini.set_responder(respond)
        a = await cluster.start_replica("replica-l", AGENTRUN_MAX_PARALLEL_TOOLS="2")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="worker", task="go", detach=True))
        run_id, seen = await steps_until(  # turn 2's sleep started
            stream, lambda steps: [s.WhichOneof("payload") for s in steps].count("tool_call") == 4
        )
        turn_1 = [s.WhichOneof("payload") for s in seen[1:7]]
        # The third call started only after a result: the stream does not hold the three starts first.
        assert turn_1 != ["tool_call"] * 3 + ["tool_result"] * 3 and sorted(turn_1) == sorted(
            ["tool_call", "tool_result"] * 3
        ), turn_1
        await wait_for(lambda: len(cluster.calls()) == 4, timeout_s=30)
        a.kill()

        again = await cluster.start_replica("replica-l", port=a.port, AGENTRUN_MAX_PARALLEL_TOOLS="2")
        rest = await watch_rest(cluster, again, run_id, seen[-1].sequence + 1)
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED, rest[-1]
        later = [e.step for e in rest if e.WhichOneof("event") == "step"]
        assert [s.WhichOneof("payload") for s in later] == ["resumed", "tool_result", "model_call", "final_response"]
        stored = await cluster.stored_run(run_id)
        assert_exactly_once_in_order(seen + later, stored)
        # The sleep made again took the run from its first start to its result, the takeover's gap included.
        started, result = seen[-1], later[1]
        assert started.tool_call.call_id == result.tool_result.call_id
        span = result.time.ToDatetime() - started.time.ToDatetime()
        assert span > later[0].resumed.gap.ToTimedelta()
        assert abs(result.tool_result.duration.ToTimedelta() - span).total_seconds() < 0.001
        [record] = [c for c in stored.tool_calls if c.id == started.tool_call.call_id]
        assert abs(record.duration.ToTimedelta() - span).total_seconds() < 0.001
        # Turn 1's calls were not made again; turn 2's sleep, in flight at the kill, was.
        assert [c["tool"] for c in cluster.calls()].count("echo") == 2
        assert [c["arguments"].get("seconds") for c in cluster.calls() if c["tool"] == "sleep"] == [0.6, 5.0, 5.0]
        assert len(cluster.gemini.requests) == 3
