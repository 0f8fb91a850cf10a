"""ForkRun end to end: a fork replays the original's recorded model replies and tool results (no request reaches the
fake Gemini and no call reaches the tool for the replayed steps) and continues live with its overrides."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage, part_field
from tests.security.support import secure_stack
from tests.support.auth import ALICE, BOB
from tests.support.stack import REPO, Stack, agent_source, running_stack, steps_of

LEDGER_SERVER = REPO / "tests" / "fixtures" / "mcp_ledger_server.py"


def ledger_servers(ledger: Path) -> dict[str, Any]:
    return {"ledger": {"command": sys.executable, "args": [str(LEDGER_SERVER), str(ledger)]}}


def content(step: run_pb2.ExecutionStep) -> tuple[Any, ...]:
    """What a step says, without times, durations or usage."""
    kind = step.WhichOneof("payload")
    if kind == "model_call":
        return (kind, step.model_call.model, step.model_call.text, step.model_call.function_call_count)
    if kind == "tool_call":
        return (kind, step.tool_call.call_id, step.tool_call.tool_name, json.loads(step.tool_call.arguments_json))
    if kind == "tool_result":
        return (kind, step.tool_result.call_id, step.tool_result.result_text, step.tool_result.is_error)
    if kind == "final_response":
        return (kind, step.final_response.text)
    return (kind, str(step))


async def fork(stack: Stack, token: str | None = None, **request: Any) -> list[ex.ForkRunResponse]:
    return [event async for event in stack.execution_stub(token).ForkRun(ex.ForkRunRequest(**request))]


async def original_run(stack: Stack) -> list[ex.ExecuteAgentResponse]:
    """Steps: 1 model call (add), 2-3 add, 4 model call (note), 5-6 note, 7 model call (answer), 8 final response."""
    usage = FakeUsage(prompt=20, candidates=5)
    stack.gemini.add(
        FakeResponse(function_calls=[FakeFunctionCall("add", {"a": 1, "b": 2}, id="c1")], usage=usage),
        FakeResponse(function_calls=[FakeFunctionCall("note", {"text": "three"}, id="c2")], usage=usage),
        FakeResponse(text="1 + 2 = 3, and I wrote it down.", usage=usage),
    )
    events = await stack.execute(agent_name="worker", task="add 1 and 2, then note the sum")
    assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED, events[-1].run_finished.error
    await stack.stored_run(events[0].run_started.run_id)
    return events


AGENTS = {"worker": agent_source(model="gemini-2.5-flash", tools=["test/add", "ledger/note"])}


async def test_a_fork_from_step_4_replays_without_calling_the_model_or_tools_then_differs(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    ledger = tmp_path / "ledger.txt"
    async with running_stack(tmp_path, AGENTS, mcp_servers=ledger_servers(ledger), **mode) as stack:
        original = await original_run(stack)
        original_id = original[0].run_started.run_id
        assert len(stack.gemini.requests) == 3 and ledger.read_text() == "three\n"

        # Fork after step 4 (the model asked to note "three"): the note is called live, the last model call is made
        # with another model.
        stack.gemini.add(FakeResponse(text="Forked: noted again.", usage=FakeUsage(prompt=30, candidates=4)))
        events = await fork(
            stack, run_id=original_id, from_sequence=4, overrides=ex.ForkOverrides(model="gemini-2.5-pro")
        )
        started, finished = events[0].run_started, events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert (started.forked_from.run_id, started.forked_from.sequence) == (original_id, 4)
        assert started.run_id != original_id and started.model_name == "gemini-2.5-pro"

        # One model request for the whole fork (step 7), none for steps 1-4; the add tool was not called again (its
        # result was reused) but the note, whose result came after step 4, was.
        assert len(stack.gemini.requests) == 4
        live = stack.gemini.requests[3]
        assert live.model == "gemini-2.5-pro"
        # Gemini 2.x does not check signatures: the replayed calls carry none.
        replayed_parts = live.parts(1) + live.parts(3)
        assert all(part_field(p, "thoughtSignature", "thought_signature") is None for p in replayed_parts)
        assert live.function_response("c1")["response"] == {"result": 3}
        assert ledger.read_text() == "three\nthree\n"

        original_steps, fork_steps = steps_of(original), steps_of(events)
        assert [content(s) for s in fork_steps[:4]] == [content(s) for s in original_steps[:4]]
        assert [content(s) for s in fork_steps[4:6]] == [
            ("tool_call", "c2", "note", {"text": "three"}),
            ("tool_result", "c2", "noted 'three' (entry 2)", False),
        ]
        assert content(fork_steps[6]) == ("model_call", "gemini-2.5-pro", "Forked: noted again.", 0)
        assert finished.final_response == "Forked: noted again."
        # The replayed model calls keep their recorded model and usage.
        assert fork_steps[0].model_call.model == "gemini-2.5-flash"
        assert fork_steps[0].model_call.usage == original_steps[0].model_call.usage

        stored = await stack.stored_run(started.run_id)
        assert (stored.forked_from.run_id, stored.forked_from.sequence) == (original_id, 4)
        assert list(stored.execution_steps) == fork_steps
        assert stored.task == "add 1 and 2, then note the sum" and stored.agent_name == "worker"


async def test_a_fork_with_an_edited_tool_result_sends_it_to_the_model_and_calls_no_tool(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    async with running_stack(tmp_path, AGENTS, mcp_servers=ledger_servers(ledger)) as stack:
        original = await original_run(stack)
        original_id = original[0].run_started.run_id

        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("note", {"text": "four"}, id="c3")]),
            FakeResponse(text="1 + 2 = 4, noted."),
        )
        overrides = ex.ForkOverrides(
            tool_results={"c1": "4"}, generation_config_json='{"temperature": 0.1}', model="gemini-3-pro-preview"
        )
        events = await fork(stack, run_id=original_id, from_sequence=3, overrides=overrides)
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        # Steps 1-3 replayed with the edited result: the first live request (the second model call) carries it.
        assert len(stack.gemini.requests) == 5
        live = stack.gemini.requests[3]
        assert live.function_response("c1")["response"] == {"result": "4"}
        assert live.generation_config["temperature"] == 0.1
        # Gemini 3 checks the thought signature of the current turn's function calls: the replayed call, whose
        # signature was not stored, carries the sentinel that skips the check.
        replayed_call = live.parts(1)[0]
        assert part_field(replayed_call, "functionCall", "function_call")["name"] == "add"
        signature = part_field(replayed_call, "thoughtSignature", "thought_signature")
        assert base64.b64decode(signature) == b"skip_thought_signature_validator"
        fork_steps = steps_of(events)
        assert content(fork_steps[2]) == ("tool_result", "c1", "4", False)
        assert ledger.read_text() == "three\nfour\n"  # the fork's own, live note
        assert finished.final_response == "1 + 2 = 4, noted."


async def test_fork_requests_that_cannot_be_served_get_clear_statuses(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.txt"
    async with running_stack(tmp_path, AGENTS, mcp_servers=ledger_servers(ledger)) as stack:
        original_id = (await original_run(stack))[0].run_started.run_id
        cases: list[tuple[dict[str, Any], grpc.StatusCode, str]] = [
            ({"run_id": original_id, "from_sequence": 7}, grpc.StatusCode.INVALID_ARGUMENT, "between 1 and 6"),
            ({"run_id": original_id, "from_sequence": 0}, grpc.StatusCode.INVALID_ARGUMENT, "between 1 and 6"),
            ({"run_id": "not-a-run-id", "from_sequence": 1}, grpc.StatusCode.INVALID_ARGUMENT, "run_id"),
            (
                {"run_id": "0190a4e2-8f3b-7c1d-9e2f-3a4b5c6d7e8f", "from_sequence": 1},
                grpc.StatusCode.NOT_FOUND,
                "run '0190a4e2-8f3b-7c1d-9e2f-3a4b5c6d7e8f' is not stored in RunsService (or is not yours to see)",
            ),
            (
                {"run_id": original_id, "from_sequence": 4, "overrides": ex.ForkOverrides(tool_results={"c9": "x"})},
                grpc.StatusCode.INVALID_ARGUMENT,
                "'c9' is not a tool call the model asked for in steps 1-4",
            ),
            (
                {"run_id": original_id, "from_sequence": 4, "overrides": ex.ForkOverrides(generation_config_json="[")},
                grpc.StatusCode.INVALID_ARGUMENT,
                "generation_config_json",
            ),
            (
                {
                    "run_id": original_id,
                    "from_sequence": 4,
                    "overrides": ex.ForkOverrides(generation_config_json='{"temprature": 1}'),
                },
                grpc.StatusCode.INVALID_ARGUMENT,
                "unknown setting",
            ),
        ]
        for request, code, text in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await fork(stack, **request)
            assert caught.value.code() == code, (request, caught.value.details())
            assert text in (caught.value.details() or ""), (request, caught.value.details())
        assert len(stack.gemini.requests) == 3  # nothing ran


async def test_another_users_run_cannot_be_forked(tmp_path: Path) -> None:
    agents = {"worker": agent_source(model="gemini-2.5-flash")}
    async with secure_stack(tmp_path, agents) as stack:
        stack.gemini.add(FakeResponse(text="first"), FakeResponse(text="second"))
        events = await stack.execute(ALICE, agent_name="worker", task="hello")
        run_id = events[0].run_started.run_id
        await stack.stored_run(run_id)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await fork(stack, BOB, run_id=run_id, from_sequence=1)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert "is not stored in RunsService" in (caught.value.details() or "")
        assert "among the runs the execution service follows" not in (caught.value.details() or "")
        # A run with one model call has no step before it to fork from.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await fork(stack, ALICE, run_id=run_id, from_sequence=1)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "no step before its last model call" in (caught.value.details() or "")


async def test_a_fork_of_a_run_of_a_session_replays_its_history_and_is_a_side_branch(tmp_path: Path) -> None:
    agents = {"chat": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(FakeResponse(text="Hello Ada."), FakeResponse(text="You are Ada."))
        runs = []
        for task in ("My name is Ada.", "Who am I?"):
            events = await stack.execute(agent_name="chat", task=task, session_id="talk")
            await stack.stored_run(events[0].run_started.run_id)
            runs.append(events)
        second_id = runs[1][0].run_started.run_id

        # Fork the second run after its first step (the history): the same history, a live answer from another model.
        stack.gemini.add(FakeResponse(text="Ada, of course."))
        events = await fork(
            stack, run_id=second_id, from_sequence=1, overrides=ex.ForkOverrides(model="gemini-2.5-pro")
        )
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert events[0].run_started.session_id == "talk"
        # Its first step is the original's SessionHistory: the same history, replayed.
        first, original_first = steps_of(events)[0], steps_of(runs[1])[0]
        assert first.sequence == 1 and first.session_history == original_first.session_history
        assert list(first.session_history.run_ids) == [runs[0][0].run_started.run_id]
        live = stack.gemini.requests[2]
        assert live.model == "gemini-2.5-pro"
        assert [p["text"] for c in live.contents for p in c["parts"]] == ["My name is Ada.", "Hello Ada.", "Who am I?"]
        assert finished.final_response == "Ada, of course."

        # The fork belongs to the session, but the session's next run takes the original's turns, not the fork's.
        stored = await stack.stored_run(events[0].run_started.run_id)
        assert stored.session_id == "talk" and stored.forked_from.run_id == second_id
        stack.gemini.add(FakeResponse(text="Still Ada."))
        third = await stack.execute(agent_name="chat", task="And now?", session_id="talk")
        assert third[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        texts = [p["text"] for c in stack.gemini.requests[3].contents for p in c["parts"]]
        assert texts == ["My name is Ada.", "Hello Ada.", "Who am I?", "You are Ada.", "And now?"]
