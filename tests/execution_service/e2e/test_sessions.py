"""Runs of a session (ExecuteAgent with session_id) end to end: real RunsService, fake Gemini, real MCP servers.
The history a run of a session receives is read back from RunsService and seen at the fake model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from execution_service.history.transcript import CHARS_PER_TOKEN
from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage, RecordedRequest, part_field
from tests.security.support import secure_stack
from tests.support.auth import ALICE, BOB
from tests.support.stack import Stack, agent_source, running_stack, steps_of


def texts(request: RecordedRequest) -> list[tuple[str, str]]:
    """(role, text) of every text part the model received, in order."""
    return [
        (content.get("role", ""), part["text"])
        for content in request.contents
        for part in content.get("parts") or []
        if part.get("text")
    ]


async def run_in_session(stack: Stack, task: str, session_id: str, token: str | None = None) -> list[Any]:
    events = await stack.execute(token, agent_name="chat", task=task, session_id=session_id)
    finished = events[-1].run_finished
    assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
    assert events[0].run_started.session_id == session_id
    await stack.stored_run(finished.run_id)  # delivered before the next run of the session reads it
    return events


def history_step(events: list[Any]) -> run_pb2.SessionHistory:
    first = steps_of(events)[0]
    assert first.WhichOneof("payload") == "session_history", first
    assert first.sequence == 1
    return first.session_history


async def test_the_third_run_of_a_session_sends_the_model_the_first_two_runs_turns(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {"chat": agent_source(model="gemini-2.5-flash", tools=["test/add"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        usage = FakeUsage(prompt=10, candidates=2)
        stack.gemini.add(
            FakeResponse(text="Hello Ada.", usage=usage),
            FakeResponse(function_calls=[FakeFunctionCall("add", {"a": 2, "b": 3}, id="c1")], usage=usage),
            FakeResponse(text="2 + 3 = 5", usage=usage),
            FakeResponse(text="You are Ada, and the sum was 5.", usage=usage),
        )
        first = await run_in_session(stack, "My name is Ada.", "chat-1")
        second = await run_in_session(stack, "Add 2 and 3.", "chat-1")
        third = await run_in_session(stack, "What is my name, and what was the sum?", "chat-1")

        # The first run had no history; the second had the first's two turns.
        assert history_step(first).turn_count == 0 and not history_step(first).HasField("first_turn")
        assert list(history_step(second).run_ids) == [first[0].run_started.run_id]
        # The third run's request to the model: run 1's task and answer, run 2's task, its function call, the
        # tool's result and its answer, then the third task.
        request = stack.gemini.requests[3]
        assert request.roles == ["user", "model", "user", "model", "user", "model", "user"]
        assert texts(request) == [
            ("user", "My name is Ada."),
            ("model", "Hello Ada."),
            ("user", "Add 2 and 3."),
            ("model", "2 + 3 = 5"),
            ("user", "What is my name, and what was the sum?"),
        ]
        call = part_field(request.parts(3)[0], "functionCall", "function_call")
        assert (call["name"], call["args"]) == ("add", {"a": 2, "b": 3})
        assert request.function_response("c1") == {"id": "c1", "name": "add", "response": {"result": 5}}

        history = history_step(third)
        run_ids = [first[0].run_started.run_id, second[0].run_started.run_id]
        assert list(history.run_ids) == run_ids
        assert history.session_id == "chat-1"
        assert history.turn_count == 5  # task 1, answer 1, task 2, the call with its result, answer 2
        assert (history.first_turn.run_id, history.first_turn.sequence) == (run_ids[0], 0)
        assert history.dropped_turn_count == 0 and list(history.dropped_run_ids) == []
        assert history.token_limit == 32_000 and 0 < history.token_count < 100

        stored = await stack.stored_run(third[0].run_started.run_id)
        assert stored.session_id == "chat-1"
        assert stored.execution_steps[0].session_history == history
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(filter='session_id = "chat-1"'))
        assert len(listed.runs) == 3


async def test_history_over_the_agents_token_limit_drops_the_oldest_turns_and_records_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agents = {
        "chat": agent_source(model="gemini-2.5-flash", extra_front_matter="session:\n  history_tokens: 40"),
    }
    long_task = "Remember this long note: " + "x" * 100  # 125 characters: 32 tokens
    caplog.set_level(logging.INFO, logger="execution_service.engine.composition")

    def tokens(*texts: str) -> int:
        return sum(-(-len(text) // CHARS_PER_TOKEN) for text in texts)

    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(text="Hello."),
            FakeResponse(text="Noted."),
            FakeResponse(text="Third answer."),
            FakeResponse(text="Fourth answer."),
        )
        runs = [
            await run_in_session(stack, task, "notes")
            for task in ("Hi.", long_task, "Third question.", "Fourth question.")
        ]
        run_ids = [events[0].run_started.run_id for events in runs]

        # Run 3 had runs 1 and 2 whole: 1 + 2 + 32 + 2 tokens <= 40.
        third = history_step(runs[2])
        assert list(third.run_ids) == run_ids[:2] and third.turn_count == 4 and third.dropped_turn_count == 0
        assert third.token_count == tokens("Hi.", "Hello.", long_task, "Noted.") == 37
        # Run 4 would have had 37 + 8 tokens: the oldest turns go, up to the next task that lets the rest fit (run
        # 2's task alone is too much, and its answer cannot open the history): runs 1 and 2 are dropped. (Run 1's
        # steps are not even read: runs 2 and 3 already hold more than the limit.)
        fourth = history_step(runs[3])
        assert list(fourth.run_ids) == [run_ids[2]]
        assert list(fourth.dropped_run_ids) == run_ids[:2]
        assert fourth.dropped_turn_count == 4 and fourth.turn_count == 2
        assert (fourth.first_turn.run_id, fourth.first_turn.sequence) == (run_ids[2], 0)
        assert fourth.token_limit == 40 and fourth.token_count == tokens("Third question.", "Third answer.")
        loaded = [r for r in caplog.records if r.getMessage() == "session history loaded"]
        assert [(r.__dict__["runs"], r.__dict__["runs_read"]) for r in loaded[-1:]] == [(3, 2)]
        # What the model received matches what was recorded.
        assert texts(stack.gemini.requests[3]) == [
            ("user", "Third question."),
            ("model", "Third answer."),
            ("user", "Fourth question."),
        ]
        stored = await stack.stored_run(run_ids[3])
        assert stored.session_id == "notes" and stored.execution_steps[0].session_history == fourth
        listed = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        assert [(a.name, a.session_history_tokens) for a in listed.agents] == [("chat", 40)]


async def test_a_session_is_its_users_own_another_users_run_of_the_same_id_sees_nothing(tmp_path: Path) -> None:
    agents = {"chat": agent_source(model="gemini-2.5-flash")}
    async with secure_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(text="Alice's answer."), FakeResponse(text="Bob's answer."), FakeResponse(text="Again.")
        )
        alice_first = await run_in_session(stack, "Alice's secret plan.", "shared", ALICE)
        bob = await run_in_session(stack, "Bob's question.", "shared", BOB)
        await run_in_session(stack, "Alice again.", "shared", ALICE)

        # Bob's run of "shared" is a session of his own: none of Alice's turns reached the model.
        assert texts(stack.gemini.requests[1]) == [("user", "Bob's question.")]
        assert history_step(bob).turn_count == 0
        # Alice's second run has her first run only, not Bob's.
        assert texts(stack.gemini.requests[2]) == [
            ("user", "Alice's secret plan."),
            ("model", "Alice's answer."),
            ("user", "Alice again."),
        ]
        assert alice_first[0].run_started.user == "alice" and bob[0].run_started.user == "bob"


async def test_an_invalid_session_id_is_invalid_argument_and_nothing_runs(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"chat": agent_source()}) as stack:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(agent_name="chat", task="hi", session_id="has space")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "session_id" in (caught.value.details() or "")
        assert stack.execution.manager.live_count == 0


async def test_a_session_run_with_runs_service_down_is_unavailable(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"chat": agent_source()}) as stack:
        await stack.stop_runs()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(agent_name="chat", task="hi", session_id="s-1")
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "RunsService" in (caught.value.details() or "")
