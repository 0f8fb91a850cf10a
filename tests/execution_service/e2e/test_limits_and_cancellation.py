"""Limits, cancellation, disconnects, detaching and reattaching: each ends in a clear, stored status."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from execution_service.durable.runtime import libpq_url
from tests.fakes.gemini_server import FakeCandidate, FakeFunctionCall, FakeRaw, FakeResponse, FakeUsage
from tests.support.stack import Stack, agent_source, running_stack, steps_of, wait_for


def sleeper(seconds: float, call_id: str) -> FakeResponse:
    return FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": seconds}, id=call_id)])


async def first_events(stream: object, count: int) -> list[ex.ExecuteAgentResponse]:
    events = []
    async for event in stream:  # type: ignore[attr-defined]
        events.append(event)
        if len(events) >= count:
            break
    return events


async def test_max_steps_ends_the_run_failed_with_the_reason(tmp_path: Path) -> None:
    agents = {"loopy": agent_source(model="gemini-2.5-flash", tools=["test/echo"], limits={"max_steps": 2})}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.set_responder(
            lambda body: FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "again"})])
        )
        events = await stack.execute(agent_name="loopy", task="loop forever")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED and finished.error.reason == "MAX_STEPS_EXCEEDED"
        assert finished.steps_taken == 2
        stored = await stack.stored_run(finished.run_id)
        assert stored.error.reason == "MAX_STEPS_EXCEEDED"


async def test_run_timeout_ends_the_run_timed_out(tmp_path: Path) -> None:
    agents = {"slow": agent_source(model="gemini-2.5-flash", tools=["test/sleep"], limits={"run_timeout": "1s"})}
    async with running_stack(tmp_path, agents) as stack:
        # The MCP server starts before the run: on a loaded machine its start alone can take the run's whole second,
        # and the run must time out inside its tool call.
        await stack.execution.tools.resolve(["test/sleep"])
        stack.gemini.add(sleeper(5, "s1"))
        events = await stack.execute(agent_name="slow", task="sleep")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_TIMED_OUT and finished.error.reason == "RUN_TIMEOUT"
        assert finished.duration.ToTimedelta().total_seconds() < 4
        stored = await stack.stored_run(finished.run_id)
        assert stored.status == run_pb2.RUN_STATUS_TIMED_OUT
        assert stored.tool_calls[0].status == run_pb2.TOOL_CALL_STATUS_CANCELLED


async def test_tool_timeout_is_a_tool_error_and_the_run_goes_on(tmp_path: Path) -> None:
    agents = {
        "impatient": agent_source(model="gemini-2.5-flash", tools=["test/sleep"], limits={"tool_timeout": "500ms"})
    }
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(sleeper(5, "s1"), FakeResponse(text="the tool timed out"))
        events = await stack.execute(agent_name="impatient", task="sleep")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        result = next(s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result")
        assert result.status == run_pb2.TOOL_CALL_STATUS_TIMED_OUT and result.is_error
        assert 0.4 < result.duration.ToTimedelta().total_seconds() < 3
        stored = await stack.stored_run(events[0].run_started.run_id)
        assert stored.tool_calls[0].status == run_pb2.TOOL_CALL_STATUS_TIMED_OUT


@pytest.mark.parametrize("send_total", [True, False], ids=["with-total", "total-omitted"])
async def test_token_budget_ends_the_run(tmp_path: Path, send_total: bool) -> None:
    agents = {"hungry": agent_source(model="gemini-2.5-flash", tools=["test/echo"], limits={"token_budget": 100})}
    async with running_stack(tmp_path, agents) as stack:
        # Without totalTokenCount the total is the sum of the counts the API did send.
        usage = FakeUsage(prompt=60, candidates=10, send_total=send_total)
        stack.gemini.set_responder(
            lambda body: FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "x"})], usage=usage)
        )
        events = await stack.execute(agent_name="hungry", task="eat tokens")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED and finished.error.reason == "TOKEN_BUDGET_EXCEEDED"
        assert finished.token_usage.total_tokens == 140
        assert finished.steps_taken == 2
        model_calls = [s.model_call for s in steps_of(events) if s.WhichOneof("payload") == "model_call"]
        assert [call.usage.total_tokens for call in model_calls] == [70, 70]


async def cancel_mid_tool(stack: Stack, mode: ex.CancelMode) -> ex.RunFinished:
    stub = stack.execution_stub()
    stream = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep"))
    seen: list[ex.ExecuteAgentResponse] = []
    async for event in stream:
        seen.append(event)
        if event.WhichOneof("event") == "step" and event.step.WhichOneof("payload") == "tool_call":
            await stub.CancelRun(ex.CancelRunRequest(run_id=seen[0].run_started.run_id, mode=mode))
        if event.WhichOneof("event") == "run_finished":
            return event.run_finished
    raise AssertionError("stream ended without run_finished")


async def test_cancel_immediate_stops_in_flight_tools_and_is_stored_cancelled(tmp_path: Path) -> None:
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(sleeper(30, "s1"))
        started = asyncio.get_running_loop().time()
        finished = await cancel_mid_tool(stack, ex.CANCEL_MODE_IMMEDIATE)
        assert asyncio.get_running_loop().time() - started < 10
        assert finished.status == run_pb2.RUN_STATUS_CANCELLED
        stored = await stack.stored_run(finished.run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED
        assert stored.tool_calls[0].status == run_pb2.TOOL_CALL_STATUS_CANCELLED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execution_stub().CancelRun(ex.CancelRunRequest(run_id=finished.run_id))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execution_stub().CancelRun(ex.CancelRunRequest(run_id="0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f"))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_run_cancelled_again_while_it_finishes_ends_once_and_for_good(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    """CancelRun sent again (a second CancelRun, a client closing its stream after cancelling) while the run is
    finishing: with RunsService down the run's end waits for it up to AGENTRUN_PUBLISH_WAIT_S, a wide window. The run
    ends CANCELLED once; in durable mode its workflow ends too (cut short, it stayed PENDING and would have resumed
    the cancelled run at the replica's next start)."""
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.add(sleeper(30, "s1"))
        stub = stack.execution_stub()
        stream = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep"))
        seen = await first_events(stream, 3)  # started, model call, tool call
        run_id = seen[0].run_started.run_id
        await stack.stop_runs()
        await stub.CancelRun(ex.CancelRunRequest(run_id=run_id))
        for _ in range(5):
            await asyncio.sleep(0.1)
            try:
                await stub.CancelRun(ex.CancelRunRequest(run_id=run_id))
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.FAILED_PRECONDITION, exc  # it finished meanwhile
        finished = [event async for event in stream][-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_CANCELLED
        await stack.start_runs()
        stored = await stack.stored_run(run_id, timeout_s=30)
        for _ in range(100):  # durable mode publishes the run's end again, with backoff, once RunsService is back
            if stored.status != run_pb2.RUN_STATUS_RUNNING:
                break
            await asyncio.sleep(0.2)
            stored = await stack.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED
        if "execution_database_url" in mode:
            url = libpq_url(mode["execution_database_url"])

            async def workflow_status() -> str:
                async with await psycopg.AsyncConnection.connect(url) as conn:
                    cursor = await conn.execute(
                        "SELECT status FROM dbos.workflow_status WHERE workflow_uuid = %s", (run_id,)
                    )
                    row = await cursor.fetchone()
                return str(row[0]) if row else "missing"

            statuses = [await workflow_status()]
            for _ in range(75):  # its end is recorded just after the run's
                if statuses[-1] == "SUCCESS":
                    break
                await asyncio.sleep(0.2)
                statuses.append(await workflow_status())
            assert statuses[-1] == "SUCCESS", statuses


async def test_clients_gone_while_their_runs_start_leave_no_run_behind(tmp_path: Path, mode: dict[str, Any]) -> None:
    """Clients whose deadline ends while their runs are being started (each a few milliseconds in): a run that was
    recorded is followed through to its end (the start is never cut in half) and, as its client went away without
    detaching, ends CANCELLED; none stays RUNNING or QUEUED."""
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(lambda body: sleeper(30, "s1"))
        await stack.execution.tools.resolve(["test/sleep"])
        stub = stack.execution_stub()

        async def start_and_go(deadline_s: float) -> None:
            call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep"), timeout=deadline_s)
            with contextlib.suppress(grpc.aio.AioRpcError):
                async for _ in call:
                    pass

        await asyncio.gather(*(start_and_go(0.02 * (1 + i)) for i in range(30)))
        runs_stub = stack.runs_stub()
        left: list[str] = []
        for _ in range(150):
            await stack.execution.flush_outbox(5)
            stored = (await runs_stub.ListRuns(rs.ListRunsRequest(page_size=100))).runs
            left = [
                f"{run.id} {run_pb2.RunStatus.Name(run.status)}"
                for run in stored
                if run.status in (run_pb2.RUN_STATUS_RUNNING, run_pb2.RUN_STATUS_QUEUED)
            ]
            if not left and len(stored) >= 3:  # runs cut off during their start appear in RunsService a moment later
                break
            await asyncio.sleep(0.2)
        assert not left, left
        assert len(stored) >= 3  # many of the 30 started before their client's deadline
        assert all(run.status == run_pb2.RUN_STATUS_CANCELLED for run in stored), [
            run_pb2.RunStatus.Name(run.status) for run in stored
        ]


async def test_cancel_run_as_a_run_ends_says_whether_it_took_effect(tmp_path: Path, mode: dict[str, Any]) -> None:
    """CancelRun sent as soon as the run's answer streams in: the run has its outcome then, and a cancel changes
    nothing; CancelRun says so (FAILED_PRECONDITION, naming the status) rather than OK for a run that ends
    COMPLETED. Whatever CancelRun answers agrees with how the run ends."""
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.set_responder(lambda body: FakeResponse(text="the answer"))
        stub = stack.execution_stub()
        for _ in range(3):
            stream = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="plain", task="answer"))
            answer: grpc.StatusCode | None = None
            finished = None
            run_id = ""
            async for event in stream:
                if event.WhichOneof("event") == "run_started":
                    run_id = event.run_started.run_id
                if event.WhichOneof("event") == "step" and event.step.WhichOneof("payload") == "final_response":
                    try:
                        await stub.CancelRun(ex.CancelRunRequest(run_id=run_id))
                        answer = grpc.StatusCode.OK
                    except grpc.aio.AioRpcError as exc:
                        answer = exc.code()
                        assert "already finished with status COMPLETED" in (exc.details() or ""), exc
                if event.WhichOneof("event") == "run_finished":
                    finished = event.run_finished
            assert finished is not None and answer is not None
            expected = run_pb2.RUN_STATUS_CANCELLED if answer == grpc.StatusCode.OK else run_pb2.RUN_STATUS_COMPLETED
            assert answer in (grpc.StatusCode.OK, grpc.StatusCode.FAILED_PRECONDITION)
            assert finished.status == expected, (answer, run_pb2.RunStatus.Name(finished.status))


async def test_cancelling_a_run_not_held_here_while_runs_service_is_down_is_unavailable(tmp_path: Path) -> None:
    """Whether a run this instance does not hold exists (and finished) is RunsService's to say: while it does not
    answer, CancelRun is UNAVAILABLE (retry), not a NOT_FOUND that may be wrong; once it is back, NOT_FOUND."""
    unknown = "0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f"
    async with running_stack(tmp_path, {"plain": agent_source()}) as stack:
        await stack.stop_runs()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execution_stub().CancelRun(ex.CancelRunRequest(run_id=unknown))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
        details = caught.value.details() or ""
        assert "not live on this execution service, and RunsService" in details and "retry later" in details, details
        await stack.start_runs()
        deadline = asyncio.get_running_loop().time() + 15
        while True:  # the service's channel reconnects with backoff
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stack.execution_stub().CancelRun(ex.CancelRunRequest(run_id=unknown))
            if caught.value.code() != grpc.StatusCode.UNAVAILABLE or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND, caught.value


async def test_cancel_after_turn_lets_the_tool_finish(tmp_path: Path) -> None:
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(sleeper(0.5, "s1"), FakeResponse(text="never asked"))
        finished = await cancel_mid_tool(stack, ex.CANCEL_MODE_AFTER_TURN)
        assert finished.status == run_pb2.RUN_STATUS_CANCELLED
        stored = await stack.stored_run(finished.run_id)
        assert stored.tool_calls[0].status == run_pb2.TOOL_CALL_STATUS_SUCCEEDED
        assert len(stack.gemini.requests) == 1


async def test_cancel_after_turn_in_the_turn_that_answers_completes_with_the_answer(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    # AFTER_TURN lets the current turn finish, then stops: a turn that brings the final answer leaves nothing to stop,
    # and the run completes with it (the proto's CancelMode comment).
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.add(FakeResponse(text="the answer", delay_s=1.0))
        stub = stack.execution_stub()
        stream = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="plain", task="answer"), timeout=60)
        run_id = (await stream.read()).run_started.run_id
        await wait_for(lambda: len(stack.gemini.requests) == 1)  # the model call is in flight
        await stub.CancelRun(ex.CancelRunRequest(run_id=run_id, mode=ex.CANCEL_MODE_AFTER_TURN))
        rest = []
        while (event := await stream.read()) is not grpc.aio.EOF:
            rest.append(event)
        finished = rest[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED and finished.final_response == "the answer"
        assert (await stack.stored_run(run_id)).status == run_pb2.RUN_STATUS_COMPLETED


async def test_client_disconnect_cancels_the_run_unless_detached(tmp_path: Path) -> None:
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(sleeper(30, "s1"))
        stub = stack.execution_stub()
        call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep"))
        events = await first_events(call, 3)  # started, model call, tool call
        run_id = events[0].run_started.run_id
        assert events[2].step.tool_call.call_id == "s1"
        disconnected_at = asyncio.get_running_loop().time()
        call.cancel()
        stored = await wait_stored(stack, run_id)
        assert stored.status == run_pb2.RUN_STATUS_CANCELLED and stored.error.reason == "CANCELLED"
        # The in-flight tool call was cancelled (not left running for its 30 s), and stored so.
        assert asyncio.get_running_loop().time() - disconnected_at < 10
        [sleep_call] = stored.tool_calls
        assert (sleep_call.id, sleep_call.status) == ("s1", run_pb2.TOOL_CALL_STATUS_CANCELLED)
        assert sleep_call.duration.ToTimedelta().total_seconds() < 10
        [result] = [s.tool_result for s in stored.execution_steps if s.WhichOneof("payload") == "tool_result"]
        assert (result.call_id, result.status, result.is_error) == ("s1", run_pb2.TOOL_CALL_STATUS_CANCELLED, True)

        stack.gemini.add(sleeper(0.3, "s2"), FakeResponse(text="done while you were away"))
        call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep", detach=True))
        events = await first_events(call, 3)
        run_id = events[0].run_started.run_id
        call.cancel()
        stored = await wait_stored(stack, run_id)
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED
        assert stored.final_response == "done while you were away"


async def wait_stored(stack: Stack, run_id: str) -> run_pb2.Run:
    live = stack.execution.manager.find(run_id)
    assert live is not None
    await wait_for(lambda: live.is_finished, timeout_s=15)
    return await stack.stored_run(run_id)


async def test_watch_run_replays_missed_steps_then_follows(tmp_path: Path) -> None:
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(sleeper(0.5, "s1"), FakeResponse(text="awake"))
        stub = stack.execution_stub()
        call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep", detach=True))
        events = await first_events(call, 3)
        run_id = events[0].run_started.run_id
        call.cancel()
        watched = [e async for e in stub.WatchRun(ex.WatchRunRequest(run_id=run_id, from_sequence=2))]
        assert watched[0].WhichOneof("event") == "run_started"
        steps = [e.step for e in watched if e.WhichOneof("event") == "step"]
        assert [s.sequence for s in steps] == list(range(2, 2 + len(steps)))
        assert watched[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        full = [e async for e in stub.WatchRun(ex.WatchRunRequest(run_id=run_id))]
        assert next(e.step.sequence for e in full if e.WhichOneof("event") == "step") == 1
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.WatchRun(ex.WatchRunRequest(run_id="0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f")):
                pass
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_watcher_that_leaves_does_not_break_the_stream_of_another_client(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    # Found by an outside audit: with the ExecuteAgent client and a WatchRun client caught up at the same step, the
    # watcher's departure took the other's place in the run; the ExecuteAgent stream then ended UNKNOWN after its
    # RunFinished (embedded) or never ended (durable).
    agents = {"sleepy": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents, **mode) as stack:
        stack.gemini.add(sleeper(1.5, "s1"), FakeResponse(text="awake"))
        stub = stack.execution_stub()
        call = stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="sleepy", task="sleep"), timeout=60)
        seen = await first_events(call, 2)  # RunStarted, the model call
        run_id = seen[0].run_started.run_id
        for leaving in ("cancelled", "deadline"):
            watch = stub.WatchRun(ex.WatchRunRequest(run_id=run_id), timeout=None if leaving == "cancelled" else 0.3)
            watched = await first_events(watch, 3)  # RunStarted, the model call, the sleep's call: caught up
            assert watched[-1].step.WhichOneof("payload") == "tool_call"
            if leaving == "cancelled":
                watch.cancel()
            else:
                with pytest.raises(grpc.aio.AioRpcError) as gone:
                    async for _ in watch:
                        pass
                assert gone.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            if leaving == "cancelled":
                seen += await first_events(call, 1)  # the client reads along: at the watcher's step
        rest = [event async for event in call]  # ends OK, right after RunFinished
        assert rest[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        kinds = [e.step.WhichOneof("payload") for e in seen + rest if e.WhichOneof("event") == "step"]
        assert kinds == ["model_call", "tool_call", "tool_result", "model_call", "final_response"]
        assert (await stack.stored_run(run_id)).status == run_pb2.RUN_STATUS_COMPLETED


async def test_retry_with_the_same_run_id_reattaches_instead_of_starting_again(
    tmp_path: Path, mode: dict[str, Any]
) -> None:
    agents = {"plain": agent_source(), "other": agent_source()}
    async with running_stack(tmp_path, agents, **mode) as stack:
        run_id = "0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f"
        first = await stack.execute(agent_name="plain", task="hi", run_id=run_id)
        second = await stack.execute(agent_name="plain", task="hi", run_id=run_id)
        assert first == second
        stored = await stack.stored_run(run_id)
        assert stored.status == run_pb2.RUN_STATUS_COMPLETED
        # The same id for another agent is not a retry: refused, the first run's record untouched.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(agent_name="other", task="something else", run_id=run_id)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "GetRun" in (caught.value.details() or "") and "leave run_id empty" in (caught.value.details() or "")
        # Nor is the same agent asked something else (a key of idempotency sent again with other parameters), or
        # with other variables or another model; other labels do not change what the run does: a retry.
        for other in (
            {"task": "another task"},
            {"task": "hi", "model": "test-2"},
            {"task": "hi", "variables": {"a": "1"}},
        ):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stack.execute(agent_name="plain", run_id=run_id, **other)
            assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS, other
            assert "same caller, agent, task, variables and model" in (caught.value.details() or "")
        assert await stack.execute(agent_name="plain", task="hi", run_id=run_id, labels={"try": "2"}) == first
        assert await stack.stored_run(run_id) == stored


async def test_max_tokens_and_blocked_prompts_end_the_run_with_a_clear_reason(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(FakeResponse(text="The answer is cut", finish_reason="MAX_TOKENS"))
        events = await stack.execute(agent_name="plain", task="write a novel")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED and finished.error.reason == "MAX_TOKENS"
        # What the model did write is the run's final response, in the stream and in the store (no FinalResponse
        # step: the run has no answer; the text is also in its model call step).
        assert finished.final_response == "The answer is cut"
        stored = await stack.stored_run(finished.run_id)
        assert (stored.status, stored.final_response) == (run_pb2.RUN_STATUS_FAILED, "The answer is cut")
        assert [s.WhichOneof("payload") for s in stored.execution_steps] == ["model_call", "error"]
        assert stored.execution_steps[0].model_call.text == "The answer is cut"

        stack.gemini.add(FakeResponse(block_reason="PROHIBITED_CONTENT"))
        finished = (await stack.execute(agent_name="plain", task="something bad"))[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED and finished.error.reason == "PROMPT_BLOCKED"
        assert "PROHIBITED_CONTENT" in finished.error.message

        stack.gemini.add(FakeResponse(text="", finish_reason="SAFETY"))
        finished = (await stack.execute(agent_name="plain", task="something unsafe"))[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED and finished.error.reason == "RESPONSE_BLOCKED"
        stored = await stack.stored_run(finished.run_id)
        assert stored.error.reason == "RESPONSE_BLOCKED"


def _case_id(value: object) -> str:
    if isinstance(value, FakeRaw):
        return "empty-body"
    if isinstance(value, FakeResponse):
        if value.block_reason:
            return f"prompt-blocked-{value.block_reason}"
        return f"{value.finish_reason or 'no-finish-reason'}{'-no-content' if value.no_content else ''}"
    return str(value) if isinstance(value, str) else ""


@pytest.mark.parametrize(
    ("turn", "reason", "in_message"),
    [
        (
            FakeResponse(no_content=True, finish_reason="MALFORMED_FUNCTION_CALL"),
            "MODEL_FINISH_REASON",
            ["MALFORMED_FUNCTION_CALL"],
        ),
        (FakeResponse(no_content=True, finish_reason="UNEXPECTED_TOOL_CALL"), "MODEL_FINISH_REASON", ["UNEXPECTED"]),
        (FakeResponse(finish_reason="TOO_MANY_TOOL_CALLS"), "MODEL_FINISH_REASON", ["TOO_MANY_TOOL_CALLS"]),
        (FakeResponse(text="half an answ", finish_reason="OTHER"), "MODEL_FINISH_REASON", ["finish reason OTHER"]),
        (FakeResponse(no_content=True, finish_reason="IMAGE_SAFETY"), "RESPONSE_BLOCKED", ["IMAGE_SAFETY"]),
        (FakeResponse(no_content=True, finish_reason="SPII"), "RESPONSE_BLOCKED", ["SPII"]),
        (FakeResponse(no_content=True, finish_reason="MODEL_ARMOR"), "RESPONSE_BLOCKED", ["MODEL_ARMOR"]),
        (FakeResponse(no_content=True, finish_reason="NO_IMAGE"), "MODEL_FINISH_REASON", ["NO_IMAGE"]),
        (FakeResponse(no_content=True, finish_reason="STOP"), "MODEL_EMPTY_RESPONSE", ["finish reason STOP"]),
        (
            FakeResponse(block_reason="OTHER", block_reason_message="The prompt was blocked for other reasons."),
            "PROMPT_BLOCKED",
            ["OTHER", "The prompt was blocked for other reasons."],
        ),
    ],
    ids=_case_id,
)
async def test_a_turn_that_is_no_answer_fails_the_run_naming_the_finish_reason(
    tmp_path: Path, turn: FakeResponse | FakeRaw, reason: str, in_message: list[str]
) -> None:
    agents = {"plain": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(turn)
        events = await stack.execute(agent_name="plain", task="answer me")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_FAILED, finished
        assert finished.error.reason == reason
        assert all(text in finished.error.message for text in in_message), finished.error.message
        assert finished.final_response == ""
        steps = steps_of(events)
        assert [s.WhichOneof("payload") for s in steps] == ["model_call", "error"]
        assert steps[-1].error.reason == reason
        if isinstance(turn, FakeResponse) and turn.finish_reason and not turn.block_reason:
            assert steps[0].model_call.finish_reason == turn.finish_reason
        stored = await stack.stored_run(finished.run_id)
        assert stored.status == run_pb2.RUN_STATUS_FAILED and stored.error == finished.error


async def test_only_candidate_zero_counts(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(
                text="It is noon.",
                thought="The user wants the time.",
                other_candidates=(FakeCandidate("It is midnight."),),
            )
        )
        finished = (await stack.execute(agent_name="plain", task="time?"))[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert finished.final_response == "It is noon."


async def test_a_reply_stream_cut_before_its_finish_reason_is_asked_again(tmp_path: Path) -> None:
    """The API's last chunk carries the finish reason: a stream that ends without one was cut, and its text may be a
    truncated answer. It is a failed attempt (MODEL_UNAVAILABLE, retried), never a completed run's answer."""
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents, model_retry_attempts=3) as stack:
        stack.gemini.add(
            FakeResponse(text="It is no", finish_reason=None, stream_chunks=2),
            FakeResponse(text="It is noon."),
        )
        events = await stack.execute(agent_name="plain", task="time?")
        finished = events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        assert finished.final_response == "It is noon."
        attempts = steps_of(events)[0].model_call.failed_attempts
        assert [(a.attempt, a.reason) for a in attempts] == [(1, "MODEL_UNAVAILABLE")]
        assert "without a finish reason" in attempts[0].message

        stack.gemini.add(*[FakeResponse(text="It is no", finish_reason=None)] * 3)
        finished = (await stack.execute(agent_name="plain", task="time?"))[-1].run_finished
        assert (finished.status, finished.error.reason) == (run_pb2.RUN_STATUS_FAILED, "MODEL_UNAVAILABLE")
        assert finished.final_response == ""


@pytest.mark.parametrize(
    "turn",
    [FakeRaw({}), FakeRaw(chunks=()), FakeResponse(no_content=True, finish_reason=None)],
    ids=["no candidate", "no chunk", "no content"],
)
async def test_a_reply_without_a_finish_reason_is_a_cut_stream_or_an_empty_answer(
    tmp_path: Path, turn: FakeResponse | FakeRaw
) -> None:
    """Streamed, a reply that ends with nothing that closes it (no finish reason, no block reason) was cut before its
    end, even before any content (a proxy closing the stream): retried, then MODEL_UNAVAILABLE. Not streamed, it is
    an empty answer: MODEL_EMPTY_RESPONSE at once."""
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents, model_retry_attempts=2) as stack:
        stack.gemini.add(turn, turn)
        finished = (await stack.execute(agent_name="plain", task="answer me"))[-1].run_finished
        assert (finished.status, finished.error.reason) == (run_pb2.RUN_STATUS_FAILED, "MODEL_UNAVAILABLE")
        assert "without a finish reason" in finished.error.message and len(stack.gemini.requests) == 2
    async with running_stack(tmp_path / "unary", agents, model_stream=False) as stack:
        stack.gemini.add(turn)
        finished = (await stack.execute(agent_name="plain", task="answer me"))[-1].run_finished
        assert (finished.status, finished.error.reason) == (run_pb2.RUN_STATUS_FAILED, "MODEL_EMPTY_RESPONSE")


async def test_streamed_model_calls_record_time_to_first_token(tmp_path: Path) -> None:
    agents = {"plain": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(FakeResponse(text="one two three four", stream_chunks=4, chunk_delay_s=0.1))
        events = await stack.execute(agent_name="plain", task="count")
        model_call = steps_of(events)[0].model_call
        ttft = model_call.time_to_first_token.ToTimedelta().total_seconds()
        total = steps_of(events)[0].duration.ToTimedelta().total_seconds()
        assert model_call.HasField("time_to_first_token") and 0 < ttft < total
        assert total >= 0.3  # three pauses between four chunks
        assert model_call.text == "one two three four"


async def test_tool_calls_of_one_turn_run_concurrently(tmp_path: Path) -> None:
    agents = {"parallel": agent_source(model="gemini-2.5-flash", tools=["test/sleep"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("sleep", {"seconds": 0.6}, id=f"p{i}") for i in range(4)]),
            FakeResponse(text="all slept"),
        )
        events = await stack.execute(agent_name="parallel", task="sleep four times")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        steps = steps_of(events)
        results = [s for s in steps if s.WhichOneof("payload") == "tool_result"]
        assert len(results) == 4 and not any(r.tool_result.is_error for r in results)
        first_call = min(s.time.ToDatetime() for s in steps if s.WhichOneof("payload") == "tool_call")
        last_result = max(s.time.ToDatetime() for s in results)
        # Sequential calls would take 2.4 s; concurrent ones about 0.6 s.
        assert (last_result - first_call).total_seconds() < 1.8


async def test_a_run_id_already_stored_is_not_executed_again(tmp_path: Path) -> None:
    from agentrun.runs.v1 import runs_service_pb2 as rs

    from agentrun_core.proto_convert import run_to_pb
    from tests.support.run_factory import make_run

    agents = {"plain": agent_source()}
    async with running_stack(tmp_path, agents) as stack:
        # Stored earlier (e.g. by an instance that has since restarted), so not live here.
        stored = make_run(agent="plain", user="local")
        await stack.runs_stub().RecordRun(rs.RecordRunRequest(run=run_to_pb(stored)))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(agent_name="plain", task="hi", run_id=stored.id)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert "GetRun" in (caught.value.details() or "")
        assert not stack.gemini.requests  # nothing was executed
        reply = await stack.runs_stub().GetRun(rs.GetRunRequest(run_id=stored.id, view=rs.RUN_VIEW_FULL))
        assert reply.run == run_to_pb(stored)


async def test_a_chosen_run_id_is_unavailable_while_runs_service_cannot_tell_whether_it_was_used(
    tmp_path: Path,
) -> None:
    from agentrun.runs.v1 import runs_service_pb2 as rs

    from agentrun_core.proto_convert import run_to_pb
    from tests.support.run_factory import make_run

    agents = {"plain": agent_source()}
    async with running_stack(tmp_path, agents) as stack:
        stored = make_run(agent="plain", user="local")  # used earlier, known only to RunsService
        await stack.runs_stub().RecordRun(rs.RecordRunRequest(run=run_to_pb(stored)))
        await stack.stop_runs()
        for run_id in (stored.id, "0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stack.execute(agent_name="plain", task="hi", run_id=run_id)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, caught.value
            details = caught.value.details() or ""
            assert f"cannot tell whether run id {run_id!r} was used before: RunsService did not answer" in details
            assert "retry later, or leave run_id empty" in details
        assert not stack.gemini.requests  # nothing was executed
        # Without a chosen id nothing needs checking: the run starts while RunsService is down.
        events = await stack.execute(agent_name="plain", task="hi")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
        # Back up (once the outbox delivered that run, the service's channel is connected again): a used id is
        # ALREADY_EXISTS again, a new one runs.
        await stack.start_runs()
        assert (await stack.stored_run(events[-1].run_finished.run_id)).status == run_pb2.RUN_STATUS_COMPLETED
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.execute(agent_name="plain", task="hi", run_id=stored.id)
        assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
        events = await stack.execute(agent_name="plain", task="hi", run_id="0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f")
        assert events[-1].run_finished.status == run_pb2.RUN_STATUS_COMPLETED
