"""Sub-agents as tools, end to end: real ExecutionService and RunsService, the fake Gemini, real MCP servers.

Each agent's system text names it ("You are NAME."), so the fake answers each run from its agent's own script,
whatever order the parallel runs' requests arrive in."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage, system_text_in
from tests.support.stack import Stack, agent_named_in, named_agent_source, running_stack, steps_of

MODEL = "gemini-2.5-flash"


def agent(name: str, *, tools: list[str] | None = None, limits: dict[str, Any] | None = None, extra: str = "") -> str:
    return named_agent_source(name, model=MODEL, tools=tools, limits=limits, extra_front_matter=extra)


class ByAgent:
    """A fake Gemini responder answering each agent's requests from that agent's script, in order."""

    def __init__(self, scripts: dict[str, Sequence[FakeResponse]]) -> None:
        self.scripts = {name: deque(turns) for name, turns in scripts.items()}

    def __call__(self, body: dict[str, Any]) -> FakeResponse:
        script = self.scripts.get(agent_named_in(body))
        if script is None:
            raise AssertionError(f"no script for the agent of {system_text_in(body)!r}")
        return script.popleft()


def call(name: str, call_id: str, **args: Any) -> FakeFunctionCall:
    return FakeFunctionCall(name, args, id=call_id)


def usage(prompt: int, candidates: int) -> FakeUsage:
    return FakeUsage(prompt=prompt, candidates=candidates)


async def stored_tree(stack: Stack, run_id: str) -> rs.GetRunResponse:
    assert await stack.execution.flush_outbox(15)
    return await stack.runs_stub().GetRun(
        rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL, include_descendants=True)
    )


def total(usage: run_pb2.TokenUsage) -> tuple[int, int, int]:
    return (usage.input_tokens, usage.output_tokens, usage.total_tokens)


async def test_a_parent_calls_two_sub_agents_in_parallel_and_sees_their_steps_live(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {
        "planner": agent("planner", tools=["agents/researcher", "agents/writer"]),
        "researcher": agent("researcher", tools=["test/echo"], extra="description: Finds facts."),
        "writer": agent("writer", extra="input:\n  schema:\n    tone: string"),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        slow = 1.0  # each child's model turns take this long, so their steps interleave
        stack.gemini.set_responder(
            ByAgent(
                {
                    "planner": [
                        FakeResponse(
                            function_calls=[
                                call("researcher", "c-research", task="find facts about otters"),
                                call("writer", "c-write", task="write a line about otters", tone="cheerful"),
                            ],
                            usage=usage(100, 10),
                        ),
                        FakeResponse(text="otters: researched and written", usage=usage(300, 20)),
                    ],
                    "researcher": [
                        FakeResponse(
                            function_calls=[call("echo", "e1", text="otters hold hands")],
                            usage=usage(40, 4),
                            delay_s=slow,
                        ),
                        FakeResponse(text="otters hold hands while asleep", usage=usage(60, 6), delay_s=slow),
                    ],
                    "writer": [
                        FakeResponse(text="Otters: the happiest swimmers!", usage=usage(50, 5), delay_s=slow),
                    ],
                }
            )
        )
        events = await stack.execute(agent_name="planner", task="tell me about otters")
        started, finished = events[0].run_started, events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert finished.final_response == "otters: researched and written"
        steps = steps_of(events)

        # The parent's own tool calls name their child runs.
        calls = {s.tool_call.call_id: s.tool_call for s in steps if s.depth == 0 and s.HasField("tool_call")}
        results = {s.tool_result.call_id: s.tool_result for s in steps if s.depth == 0 and s.HasField("tool_result")}
        research_id, write_id = calls["c-research"].child_run_id, calls["c-write"].child_run_id
        assert research_id and write_id and research_id != write_id
        assert calls["c-research"].server == "agents" and calls["c-research"].tool_name == "researcher"
        assert results["c-research"].child_run_id == research_id and not results["c-research"].is_error
        assert results["c-research"].result_text == "otters hold hands while asleep"
        assert results["c-write"].result_text == "Otters: the happiest swimmers!"

        # The children's steps came in the parent's stream, each with its run id and depth 1, interleaved.
        child_steps = [s for s in steps if s.depth == 1]
        assert {s.run_id for s in child_steps} == {research_id, write_id}
        assert all(s.run_id == started.run_id for s in steps if s.depth == 0)
        order = [s.run_id for s in child_steps]
        first_writer, last_researcher = order.index(write_id), len(order) - 1 - order[::-1].index(research_id)
        assert first_writer < last_researcher, f"children's steps were not interleaved: {order}"
        research_kinds = [s.WhichOneof("payload") for s in child_steps if s.run_id == research_id]
        assert research_kinds == ["model_call", "tool_call", "tool_result", "model_call", "final_response"]
        assert [s.sequence for s in child_steps if s.run_id == research_id] == [1, 2, 3, 4, 5]
        # The parent's own steps are numbered without its children's.
        assert [s.sequence for s in steps if s.depth == 0] == list(range(1, 1 + sum(s.depth == 0 for s in steps)))

        # The writer received its variable, typed as its schema says, and the task.
        writer_request = next(r for r in stack.gemini.requests if "You are writer." in r.system_text)
        assert "write a line about otters" in json.dumps(writer_request.contents)
        planner_request = stack.gemini.requests[0]
        schema = planner_request.declaration_schema("writer")
        assert schema is not None and schema["required"] == ["task", "tone"]
        researcher_decl = next(d for d in planner_request.function_declarations if d["name"] == "researcher")
        assert "Finds facts." in researcher_decl["description"]

        # Each child is stored as its own run, with its parent; the parent's totals with descendants are exact.
        tree = await stored_tree(stack, started.run_id)
        parent = tree.run
        children = {run.id: run for run in tree.descendants}
        assert set(children) == {research_id, write_id}
        for child_id, call_id, name in ((research_id, "c-research", "researcher"), (write_id, "c-write", "writer")):
            child = children[child_id]
            assert child.agent_name == name and child.status == run_pb2.RUN_STATUS_COMPLETED
            assert (child.parent_run_id, child.root_run_id, child.parent_tool_call_id, child.depth) == (
                parent.id,
                parent.id,
                call_id,
                1,
            )
        research = await stack.stored_run(research_id)
        assert [s.depth for s in research.execution_steps] == [0] * 5  # stored with its own steps only
        assert total(parent.token_usage) == (400, 30, 430)
        assert total(children[research_id].token_usage) == (100, 10, 110)
        assert total(children[write_id].token_usage) == (50, 5, 55)
        assert total(parent.token_usage_with_descendants) == (550, 45, 595)
        assert total(finished.token_usage_with_descendants) == (550, 45, 595)
        assert total(finished.token_usage) == (400, 30, 430)
        costs = [Decimal(run.cost.amount) for run in (parent, *children.values())]
        assert Decimal(parent.cost_with_descendants.amount) == sum(costs) > Decimal(parent.cost.amount) > 0
        assert len(parent.execution_steps) == sum(s.depth == 0 for s in steps)


async def test_a_failed_child_is_the_parents_tool_error(tmp_path: Path, mode: dict[str, Any]) -> None:
    agents = {
        "boss": agent("boss", tools=["agents/flaky"]),
        "flaky": agent("flaky", tools=["test/echo"], limits={"max_steps": 1}),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [
                        FakeResponse(function_calls=[call("flaky", "c1", task="try")]),
                        FakeResponse(text="the helper failed, so I answer myself"),
                    ],
                    "flaky": [FakeResponse(function_calls=[call("echo", "e1", text="again")])],
                }
            )
        )
        events = await stack.execute(agent_name="boss", task="delegate")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED
        [result] = [s.tool_result for s in steps_of(events) if s.depth == 0 and s.HasField("tool_result")]
        assert result.is_error and result.status == run_pb2.TOOL_CALL_STATUS_FAILED
        assert "MAX_STEPS_EXCEEDED" in result.result_text and result.child_run_id in result.result_text
        # The model read the failure as the tool's result.
        answer = stack.gemini.requests[-1]
        assert "You are boss." in answer.system_text
        assert "MAX_STEPS_EXCEEDED" in json.dumps(answer.function_response("c1"))
        child = await stack.stored_run(result.child_run_id)
        assert child.status == run_pb2.RUN_STATUS_FAILED and child.error.reason == "MAX_STEPS_EXCEEDED"
        assert child.parent_run_id == finished.run_id


async def test_cancelling_the_parent_cancels_its_children(tmp_path: Path, mode: dict[str, Any]) -> None:
    agents = {
        "boss": agent("boss", tools=["agents/sleeper"]),
        "sleeper": agent("sleeper", tools=["test/sleep"]),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [FakeResponse(function_calls=[call("sleeper", "c1", task="sleep long")])],
                    "sleeper": [FakeResponse(function_calls=[call("sleep", "s1", seconds=30)])],
                }
            )
        )
        stub = stack.execution_stub()
        stream = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="wait"))
        seen: list[ex.ExecuteAgentResponse] = []
        clock = asyncio.get_running_loop()
        async for event in stream:
            seen.append(event)
            if event.HasField("step") and event.step.depth == 1 and event.step.HasField("tool_call"):
                cancelled_at = clock.time()
                await stub.CancelRun(ex.CancelRunRequest(run_id=seen[0].run_started.run_id))
        finished = seen[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_CANCELLED
        assert clock.time() - cancelled_at < 10
        child_id = next(s.tool_call.child_run_id for s in steps_of(seen) if s.depth == 0 and s.HasField("tool_call"))
        child = await stack.stored_run(child_id)
        assert child.status == run_pb2.RUN_STATUS_CANCELLED and child.error.reason == "CANCELLED"
        assert f"its parent run {finished.run_id} ended first" in child.error.message
        [sleep_call] = child.tool_calls
        assert sleep_call.status == run_pb2.TOOL_CALL_STATUS_CANCELLED
        parent = await stack.stored_run(finished.run_id)
        assert parent.status == run_pb2.RUN_STATUS_CANCELLED
        assert parent.tool_calls[0].status == run_pb2.TOOL_CALL_STATUS_CANCELLED


async def test_the_parents_token_budget_covers_its_children(tmp_path: Path, mode: dict[str, Any]) -> None:
    agents = {
        "boss": agent("boss", tools=["agents/hungry"], limits={"token_budget": 300}),
        "hungry": agent("hungry", tools=["test/echo"]),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        hungry_turn = FakeResponse(function_calls=[call("echo", "e", text="more")], usage=usage(90, 10))
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [FakeResponse(function_calls=[call("hungry", "c1", task="eat")], usage=usage(90, 10))],
                    "hungry": [hungry_turn] * 10,
                }
            )
        )
        events = await stack.execute(agent_name="boss", task="delegate")
        finished = events[-1].run_finished
        # The child has no budget of its own: the parent's (300) stopped it at its third turn (100 + 3 * 100).
        assert finished.status == run_pb2.RUN_STATUS_FAILED and finished.error.reason == "TOKEN_BUDGET_EXCEEDED"
        assert "sub-agents' included" in finished.error.message
        [result] = [s.tool_result for s in steps_of(events) if s.depth == 0 and s.HasField("tool_result")]
        assert result.is_error and "TOKEN_BUDGET_EXCEEDED" in result.result_text
        child = await stack.stored_run(result.child_run_id)
        assert child.error.reason == "TOKEN_BUDGET_EXCEEDED" and "of its ancestor run" in child.error.message
        assert child.steps_taken == 3
        assert finished.token_usage.total_tokens == 100
        assert finished.token_usage_with_descendants.total_tokens == 400


async def test_grandchildren_reach_the_root_stream_at_depth_two(tmp_path: Path, mode: dict[str, Any]) -> None:
    agents = {
        "top": agent("top", tools=["agents/middle"]),
        "middle": agent("middle", tools=["agents/bottom"]),
        "bottom": agent("bottom"),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(
            ByAgent(
                {
                    "top": [
                        FakeResponse(function_calls=[call("middle", "t1", task="go down")], usage=usage(10, 1)),
                        FakeResponse(text="top done", usage=usage(10, 1)),
                    ],
                    "middle": [
                        FakeResponse(function_calls=[call("bottom", "m1", task="go further")], usage=usage(20, 2)),
                        FakeResponse(text="middle done", usage=usage(20, 2)),
                    ],
                    "bottom": [FakeResponse(text="bottom reached", usage=usage(30, 3))],
                }
            )
        )
        events = await stack.execute(agent_name="top", task="dig")
        root = events[0].run_started.run_id
        steps = steps_of(events)
        bottom_steps = [s for s in steps if s.depth == 2]
        assert [s.WhichOneof("payload") for s in bottom_steps] == ["model_call", "final_response"]
        middle_call = next(s.tool_call for s in steps if s.depth == 1 and s.HasField("tool_call"))
        assert {s.run_id for s in bottom_steps} == {middle_call.child_run_id}
        assert events[-1].run_finished.token_usage_with_descendants.total_tokens == 22 + 44 + 33
        bottom = await stack.stored_run(middle_call.child_run_id)
        assert (bottom.depth, bottom.root_run_id) == (2, root)
        middle = await stack.stored_run(bottom.parent_run_id)
        assert (middle.depth, middle.parent_run_id, middle.root_run_id) == (1, root, root)
        assert middle.token_usage_with_descendants.total_tokens == 44 + 33

        # WatchRun from a step of the root replays from there, its descendants' later steps included.
        watched = [e async for e in stack.execution_stub().WatchRun(ex.WatchRunRequest(run_id=root, from_sequence=3))]
        replayed = steps_of(watched)
        assert [s.sequence for s in replayed if s.depth == 0] == [3, 4, 5]
        assert len(replayed) == len(steps) - 2  # all but the root's first two steps, which came before any child's


async def test_depth_limits_cycles_and_missing_sub_agents_are_refused_at_load(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {
        "ping": agent("ping", tools=["agents/pong"]),
        "pong": agent("pong", tools=["agents/ping"]),
        "uses-ping": agent("uses-ping", tools=["agents/ping"]),
        "shallow": agent("shallow", tools=["agents/deep1"], limits={"max_depth": 1}),
        "deep1": agent("deep1", tools=["agents/deep2"]),
        "deep2": agent("deep2"),
        "orphan": agent("orphan", tools=["agents/nobody"]),
        "selfish": agent("selfish", tools=["agents/selfish"]),
        "fine": agent("fine", tools=["agents/deep1"], limits={"max_depth": 2}),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        listed = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        usable = {a.name: a for a in listed.agents}
        assert set(usable) == {"deep1", "deep2", "fine"}
        assert usable["fine"].sub_agents == ["deep1"] and usable["fine"].tools == ["agents/deep1"]
        assert usable["fine"].limits.max_depth == 2 and usable["deep2"].limits.max_depth == 3
        problems = {Path(e.path).stem: e.message for e in listed.errors}
        assert set(problems) == {"ping", "pong", "uses-ping", "shallow", "orphan", "selfish"}
        assert "cycle (ping -> pong -> ping)" in problems["ping"] and "cycle" in problems["pong"]
        assert "agents/ping cannot be used" in problems["uses-ping"]
        assert "nest 2 levels deep (shallow -> deep1 -> deep2), over its limit of 1" in problems["shallow"]
        assert "there is no agent 'nobody'" in problems["orphan"]
        assert "cannot call itself" in problems["selfish"]

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(agent_name="ping", task="go")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND

        # Fixing the file makes the agents that depend on it usable again, without a restart.
        (tmp_path / "agents" / "pong.prompt").write_text(agent("pong"))
        listed = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        assert {"ping", "pong", "uses-ping"} <= {a.name for a in listed.agents}


async def test_children_run_within_their_parents_slot_of_the_admission_queue(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {
        "boss": agent("boss", tools=["agents/helper"]),
        "helper": agent("helper"),
    }
    # One run at a time: a child queued behind its own parent would wait forever.
    async with running_stack(tmp_path, agents, max_concurrent_runs=1, max_queued_runs=0, **mode) as stack:
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [
                        FakeResponse(function_calls=[call("helper", "c1", task="a"), call("helper", "c2", task="b")]),
                        FakeResponse(text="both helped"),
                    ],
                    "helper": [FakeResponse(text="helped"), FakeResponse(text="helped")],
                }
            )
        )
        events = await asyncio.wait_for(stack.execute(agent_name="boss", task="delegate twice"), timeout=60)
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED and finished.final_response == "both helped"
        assert not any(e.HasField("run_queued") for e in events)
        results = [s.tool_result for s in steps_of(events) if s.depth == 0 and s.HasField("tool_result")]
        assert [r.result_text for r in results] == ["helped", "helped"]


def step_key(step: run_pb2.ExecutionStep) -> tuple[str, int, int]:
    return (step.run_id, step.sequence, step.depth)


async def test_reattaching_after_the_last_step_received_sends_every_later_step_exactly_once(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {
        "boss": agent("boss", tools=["agents/helper"]),
        "helper": agent("helper", tools=["test/echo"]),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        slow = 0.5  # the helper's turns take this long: the client disconnects while the child runs
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [
                        FakeResponse(function_calls=[call("helper", "c1", task="echo twice")]),
                        FakeResponse(text="boss done"),
                    ],
                    "helper": [
                        FakeResponse(function_calls=[call("echo", "e1", text="one")], delay_s=slow),
                        FakeResponse(function_calls=[call("echo", "e2", text="two")], delay_s=slow),
                        FakeResponse(text="helper done", delay_s=slow),
                    ],
                }
            )
        )
        stub = stack.execution_stub()
        # A client receives the tree's stream until it has a step of the child's, after the parent's last own step
        # so far, then goes away (detached: the run goes on).
        stream = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="boss", task="delegate", detach=True))
        received: list[run_pb2.ExecutionStep] = []
        run_id = ""
        async for event in stream:
            if event.HasField("run_started"):
                run_id = event.run_started.run_id
            if event.HasField("step"):
                received.append(event.step)
                if event.step.depth == 1 and event.step.sequence == 3:
                    break
        stream.cancel()
        last = received[-1]
        assert last.depth == 1 and any(s.depth == 0 for s in received)
        # It reattaches after the last step it received (the child's): the rest, nothing twice.
        rest = [
            e
            async for e in stub.WatchRun(
                ex.WatchRunRequest(run_id=run_id, from_run_id=last.run_id, from_sequence=last.sequence + 1)
            )
        ]
        assert rest[0].HasField("run_started") and rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        whole = [step_key(s) for s in steps_of([e async for e in stub.WatchRun(ex.WatchRunRequest(run_id=run_id))])]
        assert [step_key(s) for s in received + steps_of(rest)] == whole
        assert len(set(whole)) == len(whole) and {d for _, _, d in whole} == {0, 1}

        # The same from after any step of the stream, the parent's or the child's.
        for index, (step_run, sequence, _) in enumerate(whole):
            request = ex.WatchRunRequest(run_id=run_id, from_run_id=step_run, from_sequence=sequence + 1)
            replayed = [step_key(s) for s in steps_of([e async for e in stub.WatchRun(request)])]
            assert replayed == whole[index + 1 :], f"after step {index} ({step_run}, {sequence})"

        # Or with the last step received of each run (what works through any replica): the same rest.
        for index in range(-1, len(whole)):
            last_received: dict[str, int] = {}
            for step_run, sequence, _ in whole[: index + 1]:
                last_received[step_run] = sequence
            request = ex.WatchRunRequest(run_id=run_id, last_received=last_received)
            replayed_events = [e async for e in stub.WatchRun(request)]
            assert replayed_events[0].HasField("run_started") and replayed_events[-1].HasField("run_finished")
            assert [step_key(s) for s in steps_of(replayed_events)] == whole[index + 1 :], f"after step {index}"

        # A step the stream never carried cannot have been received: said so.
        for bad in (
            ex.WatchRunRequest(run_id=run_id, from_run_id=last.run_id, from_sequence=99),
            ex.WatchRunRequest(run_id=run_id, from_run_id=last.run_id, from_sequence=1),
            ex.WatchRunRequest(run_id=run_id, from_run_id="not-a-run-id", from_sequence=2),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [e async for e in stub.WatchRun(bad)]
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "from_" in (caught.value.details() or "")
        for bad, says in (
            (ex.WatchRunRequest(run_id=run_id, last_received={run_id: 1}, from_sequence=2), "leave from_sequence"),
            (ex.WatchRunRequest(run_id=run_id, last_received={"not-a-run-id": 1}), "UUID"),
            (ex.WatchRunRequest(run_id=run_id, last_received={run_id: -1}), "must not be negative"),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                [e async for e in stub.WatchRun(bad)]
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert "last_received" in (caught.value.details() or "") and says in (caught.value.details() or ""), bad


async def test_a_child_that_cannot_start_is_stored_failed_under_the_id_its_call_names(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {
        "boss": agent("boss", tools=["agents/writer"]),
        "writer": agent("writer", extra="input:\n  schema:\n    tone: string"),
    }
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [
                        FakeResponse(
                            function_calls=[
                                call("writer", "no-tone", task="a line"),  # its required variable is missing
                                call("writer", "no-task", tone="warm"),
                            ]
                        ),
                        FakeResponse(text="neither helper started"),
                    ],
                }
            )
        )
        events = await stack.execute(agent_name="boss", task="delegate badly")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED
        steps = steps_of(events)
        assert all(s.depth == 0 for s in steps)  # no child ran
        calls = {s.tool_call.call_id: s.tool_call for s in steps if s.HasField("tool_call")}
        results = {s.tool_result.call_id: s.tool_result for s in steps if s.HasField("tool_result")}
        assert "did not start" in results["no-tone"].result_text and "tone" in results["no-tone"].result_text
        assert "'task' must be a non-empty string" in results["no-task"].result_text

        # Each call's child_run_id names a stored run: FAILED, saying why, under its parent.
        tree = await stored_tree(stack, finished.run_id)
        children = {run.id: run for run in tree.descendants}
        assert set(children) == {calls["no-tone"].child_run_id, calls["no-task"].child_run_id}
        for call_id, why in (("no-tone", "tone"), ("no-task", "'task' must be a non-empty string")):
            child = children[calls[call_id].child_run_id]
            assert child.status == run_pb2.RUN_STATUS_FAILED and child.error.reason == "CHILD_NOT_STARTED"
            assert why in child.error.message and "could not start" in child.error.message
            assert (child.agent_name, child.parent_run_id, child.root_run_id, child.parent_tool_call_id) == (
                "writer",
                finished.run_id,
                finished.run_id,
                call_id,
            )
            assert child.depth == 1 and not child.execution_steps and child.steps_taken == 0
        assert children[calls["no-tone"].child_run_id].task == "a line"


async def test_a_fork_that_replays_a_sub_agent_call_names_the_originals_child_run(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {"boss": agent("boss", tools=["agents/helper"]), "helper": agent("helper")}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(
            ByAgent(
                {
                    "boss": [
                        FakeResponse(function_calls=[call("helper", "c1", task="help")]),
                        FakeResponse(text="original answer"),
                        FakeResponse(text="the fork's answer"),  # the fork's live model call
                    ],
                    "helper": [FakeResponse(text="helped once")],
                }
            )
        )
        original = await stack.execute(agent_name="boss", task="delegate")
        original_id = original[-1].run_finished.run_id
        [original_call] = [s.tool_call for s in steps_of(original) if s.depth == 0 and s.HasField("tool_call")]
        assert await stack.execution.flush_outbox(15)
        requests_before = len(stack.gemini.requests)

        # Steps 1-3: the boss's model call, its call of the helper and the helper's result, replayed.
        forked = [
            e async for e in stack.execution_stub().ForkRun(ex.ForkRunRequest(run_id=original_id, from_sequence=3))
        ]
        assert forked[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        assert forked[-1].run_finished.final_response == "the fork's answer"
        steps = steps_of(forked)
        assert all(s.depth == 0 for s in steps)  # no child ran again
        [call_step] = [s.tool_call for s in steps if s.HasField("tool_call")]
        [result_step] = [s.tool_result for s in steps if s.HasField("tool_result")]
        assert call_step.child_run_id == result_step.child_run_id == original_call.child_run_id
        assert result_step.result_text == "helped once"
        assert len(stack.gemini.requests) == requests_before + 1  # only the fork's own live model call
        # The id names the original's child run, which exists.
        child = await stack.stored_run(call_step.child_run_id)
        assert child.parent_run_id == original_id and child.status == run_pb2.RUN_STATUS_COMPLETED
