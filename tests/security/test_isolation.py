"""Per-user isolation as an attacker probes it: another user's run ids on every RPC, forged and swapped page
tokens, filter injection, and what lists and stats reveal. Secrets in tool results never leave the engine."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import runs_service_pb2 as rs
from google.protobuf.timestamp_pb2 import Timestamp

from tests.security.support import drain, secure_stack, status_of
from tests.support.auth import ADMIN, ALICE, BOB
from tests.support.stack import Stack, agent_source, steps_of

SECRETS = ("hunter2-not-a-real-password", "sk-test-0123456789abcdef", "tok-test-abcdef")


def _range() -> tuple[Timestamp, Timestamp]:
    start, end = Timestamp(), Timestamp()
    start.FromDatetime(datetime.now(UTC) - timedelta(days=1))
    end.FromDatetime(datetime.now(UTC) + timedelta(days=1))
    return start, end


async def _run(stack: Stack, token: str, agent: str = "echo", **request: object) -> str:
    events = await stack.execute(token, agent_name=agent, task="hello", **request)
    run_id = events[0].run_started.run_id
    await stack.stored_run(run_id)  # delivered to RunsService
    return run_id


async def test_another_users_runs_are_not_found_on_every_rpc_and_never_counted(tmp_path: Path) -> None:
    slow = agent_source(tools=["test/sleep"])
    async with secure_stack(tmp_path, {"echo": agent_source(), "slow": slow}) as stack:
        alice_run = await _run(stack, ALICE)
        runs, execution = stack.runs_stub(BOB), stack.execution_stub(BOB)
        # RunsService: as if the run did not exist.
        for call in (
            lambda: runs.GetRun(rs.GetRunRequest(run_id=alice_run, view=rs.RUN_VIEW_FULL)),
            lambda: runs.ListRunSteps(rs.ListRunStepsRequest(run_id=alice_run)),
        ):
            code, details = await status_of(call)
            assert code == grpc.StatusCode.NOT_FOUND, details
            assert "alice" not in details
        # ExecutionService: a live run of alice's (the test model's sleep tool keeps it running).
        stream = stack.execution_stub(ALICE).ExecuteAgent(
            ex.ExecuteAgentRequest(agent_name="slow", task="nap", detach=True)
        )
        live_id = (await stream.read()).run_started.run_id
        for run_id in (live_id, alice_run):
            code, _ = await status_of(partial(execution.CancelRun, ex.CancelRunRequest(run_id=run_id)))
            assert code == grpc.StatusCode.NOT_FOUND
            code, _ = await status_of(partial(drain, execution.WatchRun(ex.WatchRunRequest(run_id=run_id))))
            assert code == grpc.StatusCode.NOT_FOUND
        # Reusing alice's run ids (live or finished) to start a run does not attach bob to it, and answers exactly
        # as for any id used before: ALREADY_EXISTS, with nothing about whose run it is or whether it is live.
        answers = set()
        for run_id in (live_id, alice_run):
            code, details = await status_of(
                partial(
                    drain, execution.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="x", run_id=run_id))
                )
            )
            assert code == grpc.StatusCode.ALREADY_EXISTS and "alice" not in details
            answers.add(details.replace(run_id, "<id>"))
        assert len(answers) == 1, answers
        assert not stack.execution.manager.find(live_id).is_finished  # type: ignore[union-attr]
        await stack.execution_stub(ALICE).CancelRun(ex.CancelRunRequest(run_id=live_id))
        stream.cancel()

        bob_run = await _run(stack, BOB)
        start, end = _range()
        listed = await runs.ListRuns(rs.ListRunsRequest(page_size=100, filter='user = "alice"'))
        assert list(listed.runs) == []
        listed = await runs.ListRuns(rs.ListRunsRequest(page_size=100))
        assert [r.id for r in listed.runs] == [bob_run]
        assert all(r.user == "bob" for r in listed.runs)
        stats = await runs.GetRunStats(
            rs.GetRunStatsRequest(start_time=start, end_time=end, group_by=rs.STATS_GROUP_BY_USER)
        )
        assert [(g.key, g.run_count) for g in stats.groups] == [("bob", 1)]
        tools = await stack.runs_stub(BOB).GetToolStats(rs.GetToolStatsRequest(start_time=start, end_time=end))
        assert list(tools.tools) == []  # alice's sleep call is not counted
        # Admins see everyone.
        admin_stats = await stack.runs_stub(ADMIN).GetRunStats(
            rs.GetRunStatsRequest(start_time=start, end_time=end, group_by=rs.STATS_GROUP_BY_USER)
        )
        assert {g.key for g in admin_stats.groups} == {"alice", "bob"}
        got = await stack.runs_stub(ALICE).GetRun(rs.GetRunRequest(run_id=alice_run))
        assert got.run.user == "alice"


async def test_forged_swapped_and_foreign_page_tokens_are_invalid_argument(tmp_path: Path) -> None:
    async with secure_stack(tmp_path) as stack:
        for _ in range(3):
            await _run(stack, ALICE)
        await _run(stack, BOB)
        await _run(stack, BOB)
        alice, bob = stack.runs_stub(ALICE), stack.runs_stub(BOB)
        page = await alice.ListRuns(rs.ListRunsRequest(page_size=1))
        token = page.next_page_token
        assert token
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[5] ^= 0x01
        tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
        cases = {
            "swapped to bob": (bob, rs.ListRunsRequest(page_size=1, page_token=token)),
            "tampered": (alice, rs.ListRunsRequest(page_size=1, page_token=tampered)),
            "truncated": (alice, rs.ListRunsRequest(page_size=1, page_token=token[:-4])),
            "garbage": (alice, rs.ListRunsRequest(page_size=1, page_token="!!not base64!!")),
            "another filter": (alice, rs.ListRunsRequest(page_size=1, page_token=token, filter='agent_name = "echo"')),
            "another order": (alice, rs.ListRunsRequest(page_size=1, page_token=token, order_by="start_time asc")),
            "huge": (alice, rs.ListRunsRequest(page_size=1, page_token="A" * 100_000)),
        }
        for label, (stub, request) in cases.items():
            code, details = await status_of(partial(stub.ListRuns, request))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (label, code, details)
            assert "page_token" in details, label
        # The genuine token still works for alice and never shows bob's runs.
        rest = await alice.ListRuns(rs.ListRunsRequest(page_size=10, page_token=token))
        assert len(rest.runs) == 2 and all(r.user == "alice" for r in rest.runs)
        # Step page tokens are bound to the run and the caller too.
        run_id = page.runs[0].id
        steps = await alice.ListRunSteps(rs.ListRunStepsRequest(run_id=run_id, page_size=1))
        assert steps.next_page_token
        admin = stack.runs_stub(ADMIN)
        code, _ = await status_of(
            lambda: admin.ListRunSteps(rs.ListRunStepsRequest(run_id=run_id, page_token=steps.next_page_token))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        other_run = rest.runs[0].id
        code, _ = await status_of(
            lambda: alice.ListRunSteps(rs.ListRunStepsRequest(run_id=other_run, page_token=steps.next_page_token))
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT


INJECTIONS = [
    'agent_name = "x\' OR 1=1 --"',
    'agent_name = "x" OR 1=1',
    "agent_name = 'x'; DROP TABLE runs; --'",
    'user = "alice" OR user != ""',
    'agent_name = "\\" OR \\"1\\"=\\"1"',
    'labels.source = "x\' UNION SELECT * FROM runs --"',
    "status = COMPLETED) OR (1=1",
    "agent_name:*",
    'task = "%"',
]


async def test_filter_injection_returns_nothing_and_leaks_nothing(tmp_path: Path) -> None:
    async with secure_stack(tmp_path) as stack:
        await _run(stack, ALICE)
        bob = stack.runs_stub(BOB)
        start, end = _range()
        for text in INJECTIONS:
            for call in (
                lambda t=text: bob.ListRuns(rs.ListRunsRequest(filter=t)),
                lambda t=text: bob.GetRunStats(rs.GetRunStatsRequest(start_time=start, end_time=end, filter=t)),
                lambda t=text: bob.GetToolStats(rs.GetToolStatsRequest(start_time=start, end_time=end, filter=t)),
            ):
                try:
                    reply = await call()
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (text, exc.code(), exc.details())
                    assert "alice" not in (exc.details() or "")
                    continue
                assert "alice" not in str(reply), text
                assert not getattr(reply, "runs", None), text
        # And the table is still there.
        admin = await stack.runs_stub(ADMIN).ListRuns(rs.ListRunsRequest())
        assert len(admin.runs) == 1
        listed = await stack.runs_stub(ADMIN).ListRuns(rs.ListRunsRequest(filter=INJECTIONS[0]))
        assert list(listed.runs) == []


async def test_secrets_in_tool_results_never_reach_the_stream_or_the_store(tmp_path: Path) -> None:
    async with secure_stack(tmp_path) as stack:
        events = await stack.execute(ALICE, agent_name="leaky", task="show me the config")
        run_id = events[0].run_started.run_id
        assert events[-1].WhichOneof("event") == "run_finished"
        streamed = b"".join(e.SerializeToString() for e in events)
        stored = await stack.stored_run(run_id)
        steps = await stack.runs_stub(ALICE).ListRunSteps(rs.ListRunStepsRequest(run_id=run_id))
        listed = await stack.runs_stub(ALICE).ListRuns(rs.ListRunsRequest(view=rs.RUN_VIEW_FULL))
        for blob in (streamed, stored.SerializeToString(), steps.SerializeToString(), listed.SerializeToString()):
            for secret in SECRETS:
                assert secret.encode() not in blob, secret
            assert b"[REDACTED]" in blob
        results = [s.tool_result for s in steps_of(events) if s.WhichOneof("payload") == "tool_result"]
        assert results and "svc-billing" in results[0].result_text  # the harmless parts stay
        assert "[REDACTED]" in stored.final_response


async def test_cancelling_another_users_long_finished_run_is_not_found(tmp_path: Path) -> None:
    """A run no longer in the instance's memory is looked up in the store to answer FAILED_PRECONDITION; that
    lookup must not tell another user that the run exists."""
    async with secure_stack(tmp_path, {"echo": agent_source()}) as stack:
        alice_run = await _run(stack, ALICE)
        await stack.stored_run(alice_run)
        stack.execution.manager._finished.clear()  # as after a restart
        code, details = await status_of(
            partial(stack.execution_stub(BOB).CancelRun, ex.CancelRunRequest(run_id=alice_run))
        )
        assert code == grpc.StatusCode.NOT_FOUND and "COMPLETED" not in details
        code, _ = await status_of(partial(stack.execution_stub(ALICE).CancelRun, ex.CancelRunRequest(run_id=alice_run)))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
