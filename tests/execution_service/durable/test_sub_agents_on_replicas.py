"""Sub-agents in the durable mode with real replicas: a replica SIGKILLed while a child run's model call is in flight.
A survivor takes over both the parent and the child; the child resumes where it stopped (its completed model call
and tool call are not made again), the parent's call of it is not started twice (one child run, the same id), and the
parent completes with the child's answer. A client watching the parent through the survivor sees the child's steps
in the parent's stream."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage, function_results_in
from tests.support.replicas import execution_database, running_cluster
from tests.support.stack import agent_named_in, named_agent_source, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(300)]

MODEL = "gemini-2.5-flash"
LIMITS = {"tool_timeout": "60s", "run_timeout": "300s"}
AGENTS = {
    name: named_agent_source(name, model=MODEL, tools=tools, limits=LIMITS)
    for name, tools in (("boss", ["agents/helper"]), ("helper", ["test/echo"]))
}
SLOW_S = 4.0  # the helper's last model call: the replica is killed while it is in flight


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    with execution_database() as url:
        yield url


def turn_of(body: dict[str, Any]) -> tuple[str, int]:
    """(agent, turn): decided by the request itself, so a repeated model call shows up as a second request."""
    return (agent_named_in(body), function_results_in(body))


def respond(body: dict[str, Any]) -> FakeResponse:
    match turn_of(body):
        case ("boss", 0):
            return FakeResponse(function_calls=[FakeFunctionCall("helper", {"task": "help me"}, id="c-help")])
        case ("boss", _):
            return FakeResponse(text="boss done")
        case ("helper", 0):
            return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "one"}, id="e1")])
        case _:
            return FakeResponse(text="helper done", delay_s=SLOW_S)


async def test_a_replica_killed_during_a_childs_model_call(tmp_path: Path, database_url: str) -> None:
    async with running_cluster(
        tmp_path, database_url, AGENTS, AGENTRUN_HEARTBEAT_INTERVAL_S="0.5", AGENTRUN_TAKEOVER_TIMEOUT_S="3"
    ) as cluster:
        cluster.gemini.set_responder(respond)
        a = await cluster.start_replica("replica-sa")
        b = await cluster.start_replica("replica-sb")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="go", detach=True))
        started = (await stream.read()).run_started
        run_id = started.run_id
        # The shared queue gave the parent to either replica (its child runs beside it): that one dies.
        dead, survivor = (a, b) if started.replica == a.name else (b, a)
        # The child's second model call is in flight (received by the fake, not answered yet).
        await wait_for(lambda: any(turn_of(r.body) == ("helper", 1) for r in cluster.gemini.requests), timeout_s=60)
        stream.cancel()
        dead.kill()

        # Through the survivor: the parent's whole stream, its child's steps at depth 1 included.
        events = [e async for e in cluster.stub(survivor).WatchRun(ex.WatchRunRequest(run_id=run_id))]
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED and finished.final_response == "boss done"
        steps = [e.step for e in events if e.WhichOneof("event") == "step"]
        [call] = [s.tool_call for s in steps if s.depth == 0 and s.HasField("tool_call")]
        [result] = [s.tool_result for s in steps if s.depth == 0 and s.HasField("tool_result")]
        assert result.child_run_id == call.child_run_id and result.result_text == "helper done"
        child_steps = [s for s in steps if s.depth == 1]
        assert {s.run_id for s in child_steps} == {call.child_run_id}
        assert [s.WhichOneof("payload") for s in child_steps][-2:] == ["model_call", "final_response"]

        # No completed model call was made again: each turn once, but the helper's call in flight at the kill.
        made = Counter(turn_of(r.body) for r in cluster.gemini.requests)
        assert made == {("boss", 0): 1, ("helper", 0): 1, ("helper", 1): 2, ("boss", 1): 1}, made
        # The child's completed tool call was not made again.
        assert [c["tool"] for c in cluster.calls()] == ["echo"]

        # One child run, stored with its parent, resumed on the survivor.
        parent = await cluster.stored_run(run_id)
        child = await cluster.stored_run(call.child_run_id)
        assert parent.status == run_pb2.RUN_STATUS_COMPLETED
        assert child.status == run_pb2.RUN_STATUS_COMPLETED and child.final_response == "helper done"
        assert (child.parent_run_id, child.root_run_id, child.parent_tool_call_id, child.depth) == (
            run_id,
            run_id,
            "c-help",
            1,
        )
        kinds = [s.WhichOneof("payload") for s in child.execution_steps]
        assert kinds == ["model_call", "tool_call", "tool_result", "resumed", "model_call", "final_response"]
        assert child.execution_steps[3].resumed.previous_replica == dead.name
        assert child.execution_steps[3].resumed.replica == survivor.name
        tree = await cluster.runs_stub().GetRun(
            rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_BASIC, include_descendants=True)
        )
        assert [r.id for r in tree.descendants] == [call.child_run_id]
        assert tree.run.token_usage_with_descendants.total_tokens == (
            parent.token_usage.total_tokens + child.token_usage.total_tokens
        )


def slow_boss_answer(body: dict[str, Any]) -> FakeResponse:
    """As `respond`, but the helper is quick and the boss's answer (after the child ended) is the slow call."""
    usage = FakeUsage(prompt=10, candidates=1)
    match turn_of(body):
        case ("boss", 0):
            return FakeResponse(
                function_calls=[FakeFunctionCall("helper", {"task": "help me"}, id="c-help")], usage=usage
            )
        case ("boss", _):
            return FakeResponse(text="boss done", delay_s=SLOW_S, usage=usage)
        case ("helper", 0):
            return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "one"}, id="e1")], usage=usage)
        case _:
            return FakeResponse(text="helper done", usage=usage)


async def test_a_parent_resumed_after_its_child_ended_does_not_run_the_child_again(
    tmp_path: Path, database_url: str
) -> None:
    async with running_cluster(tmp_path, database_url, AGENTS) as cluster:
        cluster.gemini.set_responder(slow_boss_answer)
        a = await cluster.start_replica("replica-sr")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="go", detach=True))
        run_id = (await stream.read()).run_started.run_id
        # The boss's answer is in flight: its call of the helper completed (a checkpointed step).
        await wait_for(lambda: any(turn_of(r.body) == ("boss", 1) for r in cluster.gemini.requests), timeout_s=60)
        stream.cancel()
        a.kill()
        again = await cluster.start_replica("replica-sr", port=a.port)
        events = [e async for e in cluster.stub(again).WatchRun(ex.WatchRunRequest(run_id=run_id))]
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert events[-1].run_finished.final_response == "boss done"
        made = Counter(turn_of(r.body) for r in cluster.gemini.requests)
        assert made == {("boss", 0): 1, ("helper", 0): 1, ("helper", 1): 1, ("boss", 1): 2}, made
        assert [c["tool"] for c in cluster.calls()] == ["echo"]
        tree = await cluster.runs_stub().GetRun(
            rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_BASIC, include_descendants=True)
        )
        [child] = tree.descendants
        assert child.status == run_pb2.RUN_STATUS_COMPLETED and child.parent_run_id == run_id
        parent = await cluster.stored_run(run_id)
        # The child's tokens count in its parent's totals, from the call's replayed result.
        assert (parent.token_usage.total_tokens, child.token_usage.total_tokens) == (22, 22)
        assert parent.token_usage_with_descendants.total_tokens == 44
        assert [s.WhichOneof("payload") for s in parent.execution_steps] == [
            "model_call",
            "tool_call",
            "tool_result",
            "resumed",
            "model_call",
            "final_response",
        ]
        # Watched through the replica that resumed the parent, the tree's stream has every step of both runs once:
        # the child's too, though it ended before the resumption (the parent's run in memory never had them).
        child_run = await cluster.stored_run(child.id)
        stored = sorted(
            [(run_id, s.sequence) for s in parent.execution_steps]
            + [(child.id, s.sequence) for s in child_run.execution_steps]
        )
        for request in (
            ex.WatchRunRequest(run_id=run_id),
            ex.WatchRunRequest(run_id=run_id, from_sequence=2),
            ex.WatchRunRequest(run_id=run_id, last_received={run_id: 2, child.id: 1}),
        ):
            watched = [e async for e in cluster.stub(again).WatchRun(request)]
            assert watched[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
            keys = [(e.step.run_id, e.step.sequence) for e in watched if e.WhichOneof("event") == "step"]
            if request.last_received:
                expected = [k for k in stored if k[1] > request.last_received[k[0]]]
            elif request.from_sequence:
                expected = [k for k in stored if k[0] == child.id or k[1] >= request.from_sequence]
            else:
                expected = stored
            assert sorted(keys) == expected and len(set(keys)) == len(keys), request


def step_keys(events: list[Any]) -> list[tuple[str, int, int, str]]:
    return [
        (e.step.run_id, e.step.sequence, e.step.depth, e.step.WhichOneof("payload"))
        for e in events
        if e.WhichOneof("event") == "step"
    ]


def three_levels(body: dict[str, Any]) -> FakeResponse:
    """boss calls helper; helper calls echo, then helper2 (a grandchild of boss's run), then answers."""
    agent, results = turn_of(body)
    if agent == "boss":
        if results == 0:
            return FakeResponse(function_calls=[FakeFunctionCall("helper", {"task": "help"}, id="c-help")])
        return FakeResponse(text="boss done")
    if agent == "helper2":
        return FakeResponse(text="helper2 done", delay_s=0.3)
    if results == 0:
        return FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "one"}, id="e1")], delay_s=0.3)
    if results == 1:
        return FakeResponse(function_calls=[FakeFunctionCall("helper2", {"task": "more"}, id="c-more")], delay_s=0.3)
    return FakeResponse(text="helper done", delay_s=0.3)


async def test_a_watcher_on_another_replica_sees_the_whole_tree(tmp_path: Path, database_url: str) -> None:
    agents = {
        **AGENTS,
        "helper": named_agent_source("helper", model=MODEL, tools=["test/echo", "agents/helper2"]),
        "helper2": named_agent_source("helper2", model=MODEL),
    }
    async with running_cluster(tmp_path, database_url, agents) as cluster:
        cluster.gemini.set_responder(three_levels)
        a = await cluster.start_replica("replica-wa")
        b = await cluster.start_replica("replica-wb")
        stream = cluster.stub(a).ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="go"))
        first = await stream.read()
        run_id = first.run_started.run_id
        watch = cluster.stub(b).WatchRun(ex.WatchRunRequest(run_id=run_id))
        local = [first]
        while (event := await stream.read()) is not grpc.aio.EOF:
            local.append(event)
        remote = [e async for e in watch]
        assert local[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert remote[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        whole = step_keys(local)
        assert {depth for _, _, depth, _ in whole} == {0, 1, 2}
        # The replica that runs the tree and the one that reads it from the streams show the same steps, in order.
        assert step_keys(remote) == whole

        # From a step of the run: the children running then, from that step on, and everything after.
        later = [e async for e in cluster.stub(b).WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=3))]
        after_step_2 = whole[whole.index((run_id, 2, 0, "tool_call")) + 1 :]
        assert step_keys(later) == after_step_2

        # A client that lost replica a mid-tree reattaches through b with the last step it received of each run:
        # every later step exactly once, wherever it stopped (the parent's step, a child's, a grandchild's).
        for index in range(len(whole)):
            last_received: dict[str, int] = {}
            for step_run, sequence, _, _ in whole[: index + 1]:
                last_received[step_run] = sequence
            request = ex.WatchRunRequest(run_id=run_id, last_received=last_received)
            rest = [e async for e in cluster.stub(b).WatchRun(request)]
            assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
            assert step_keys(rest) == whole[index + 1 :], f"after step {index}"
