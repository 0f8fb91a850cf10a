"""Sub-agent trees, sessions and forks through the real RunsService (generated stubs), on SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.domain import ForkOrigin, Run, RunStatus, SessionHistory, SessionTurn
from agentrun_core.grpc_status import error_reason
from agentrun_core.ids import new_run_id
from agentrun_core.proto_convert import cost_from_pb, duration_from_pb, run_to_pb, timestamp_from_pb
from runs_service.queries import MAX_DESCENDANTS
from runs_service.storage.percentiles import micros_to_duration, percentile_cont
from tests.runs_service.api.conftest import RunsClient, start_runs_client
from tests.support.auth import ALICE, BOB, SERVICE, channel, token_auth
from tests.support.composition import child_of, cost_sum, link_child, top_level, usage_sum, with_totals

pytestmark = pytest.mark.timeout(120)


async def record(stub: rs_grpc.RunsServiceStub, run: Run) -> rs.RecordRunResponse:
    return await stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)))


def tree() -> tuple[Run, Run, Run, Run]:
    """A root with two children (tool calls call-001 and call-002) and a grandchild under the first."""
    root = top_level(agent="planner", session_id="chat-1")
    first = child_of(root, "call-001", agent="researcher", start_offset_s=0.5)
    second = child_of(root, "call-002", agent="writer", start_offset_s=0.8)
    grandchild = child_of(first, "call-001", agent="searcher", start_offset_s=0.1)
    first = with_totals(link_child(first, grandchild), [grandchild])
    root = with_totals(link_child(link_child(root, first), second), [first, second, grandchild])
    return root, first, second, grandchild


def pb_usage_sum(runs: list[run_pb2.Run]) -> run_pb2.TokenUsage:
    total = run_pb2.TokenUsage()
    for run in runs:
        for field in ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "thinking_tokens"):
            setattr(total, field, getattr(total, field) + getattr(run.token_usage, field))
    return total


def pb_cost_sum(runs: list[run_pb2.Run]) -> Decimal:
    return sum((cost_from_pb(r.cost).amount for r in runs if r.HasField("cost")), Decimal(0))


async def list_all(stub: rs_grpc.RunsServiceStub, request: rs.ListRunsRequest) -> list[run_pb2.Run]:
    found: list[run_pb2.Run] = []
    while True:
        page = await stub.ListRuns(request)
        found.extend(page.runs)
        if not page.next_page_token:
            return found
        request.page_token = page.next_page_token


async def test_a_tree_recorded_in_any_order_reads_back_whole_with_get_run(runs: RunsClient) -> None:
    root, first, second, grandchild = tree()
    # The outbox delivers at least once and in any order: children may arrive before their parent.
    for run in (grandchild, second, root, first, root):
        assert (await record(runs.stub, run)).stored_status == run_pb2.RUN_STATUS_COMPLETED

    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=root.id, view=rs.RUN_VIEW_FULL, include_descendants=True))
    assert got.run == run_to_pb(root)
    assert [d.id for d in got.descendants] == [first.id, grandchild.id, second.id]  # by start time
    assert list(got.descendants) == [run_to_pb(r.basic()) for r in (first, grandchild, second)]
    assert not got.descendants_truncated
    # What a user checks: the tree's structure, and that the root's totals are its own plus each descendant's.
    assert {d.id: (d.parent_run_id, d.depth) for d in got.descendants} == {
        first.id: (root.id, 1),
        second.id: (root.id, 1),
        grandchild.id: (first.id, 2),
    }
    everything = [got.run, *got.descendants]
    assert got.run.token_usage_with_descendants == pb_usage_sum(everything)
    assert cost_from_pb(got.run.cost_with_descendants).amount == pb_cost_sum(everything)
    assert got.run.token_usage.total_tokens < got.run.token_usage_with_descendants.total_tokens
    child_ids = {s.tool_call.child_run_id for s in got.run.execution_steps if s.WhichOneof("payload") == "tool_call"}
    assert child_ids == {first.id, second.id, ""}

    under_first = await runs.stub.GetRun(rs.GetRunRequest(run_id=first.id, include_descendants=True))
    assert [d.id for d in under_first.descendants] == [grandchild.id]
    assert under_first.run.root_run_id == root.id and under_first.run.parent_tool_call_id == "call-001"
    leaf = await runs.stub.GetRun(rs.GetRunRequest(run_id=grandchild.id, include_descendants=True))
    assert list(leaf.descendants) == [] and not leaf.descendants_truncated
    plain = await runs.stub.GetRun(rs.GetRunRequest(run_id=root.id))
    assert list(plain.descendants) == []


async def test_descendants_are_capped_at_the_first_by_start_time(runs: RunsClient) -> None:
    root = top_level()
    await record(runs.stub, root)
    children = [
        child_of(root, f"call-{i:03d}", start_offset_s=1 + i / 1000, model_calls=1, tool_calls=0)
        for i in range(MAX_DESCENDANTS + 2)
    ]
    shuffled = children[:]
    random.Random(7).shuffle(shuffled)
    for child in shuffled:
        await record(runs.stub, child)
    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=root.id, include_descendants=True))
    assert got.descendants_truncated
    assert [d.id for d in got.descendants] == [c.id for c in children[:MAX_DESCENDANTS]]
    # The whole tree pages through ListRuns.
    listed = await list_all(
        runs.stub, rs.ListRunsRequest(filter=f'root_run_id = "{root.id}"', order_by="start_time asc", page_size=200)
    )
    assert [r.id for r in listed] == [c.id for c in children]


async def test_list_runs_filters_on_parent_root_session_and_depth(runs: RunsClient) -> None:
    root, first, second, grandchild = tree()
    other = top_level(agent="planner", session_id="chat-2", base=root, start_offset_s=5)
    loose = top_level(agent="clock", base=root, start_offset_s=6)
    for run in (root, first, second, grandchild, other, loose):
        await record(runs.stub, run)

    async def ids(filter_text: str) -> list[str]:
        listed = await list_all(runs.stub, rs.ListRunsRequest(filter=filter_text, order_by="start_time asc"))
        return [r.id for r in listed]

    assert await ids(f'parent_run_id = "{root.id}"') == [first.id, second.id]
    assert await ids(f'root_run_id = "{root.id}"') == [first.id, grandchild.id, second.id]
    assert await ids('parent_run_id = ""') == [root.id, other.id, loose.id]
    assert await ids("depth >= 1") == [first.id, grandchild.id, second.id]
    assert await ids("depth = 2") == [grandchild.id]
    assert await ids('session_id = "chat-1"') == [root.id, first.id, grandchild.id, second.id]
    assert await ids('session_id = "chat-1" AND parent_run_id = ""') == [root.id]
    assert await ids('session_id = "chat-*"') == [root.id, first.id, grandchild.id, second.id, other.id]
    assert await ids('NOT session_id = ""') == [root.id, first.id, grandchild.id, second.id, other.id]
    # "*" alone means "has one", as for labels: not every run (a prefix of "" would be every run).
    assert await ids('session_id = "*"') == [root.id, first.id, grandchild.id, second.id, other.id]
    assert await ids('parent_run_id = "*"') == [first.id, grandchild.id, second.id]
    assert await ids('NOT parent_run_id = "*"') == [root.id, other.id, loose.id]
    assert await ids('root_run_id = "' + new_run_id() + '"') == []


async def test_composition_fields_round_trip_and_replays_are_unchanged(runs: RunsClient) -> None:
    original = top_level(session_id="chat-9")
    history = SessionHistory(
        session_id="chat-9",
        run_ids=(new_run_id(), new_run_id()),
        turn_count=7,
        first_turn=SessionTurn(run_id=new_run_id(), sequence=3),
        dropped_turn_count=5,
        dropped_run_ids=(new_run_id(),),
        token_limit=8000,
        token_count=7420,
    )
    steps = (dataclasses.replace(original.execution_steps[0], payload=history), *original.execution_steps)
    fork = dataclasses.replace(
        original,
        id=new_run_id(),
        forked_from=ForkOrigin(run_id=original.id, sequence=4),
        execution_steps=tuple(dataclasses.replace(s, sequence=i, run_id="") for i, s in enumerate(steps, start=1)),
    )
    assert (await record(runs.stub, fork)).outcome == rs.RECORD_OUTCOME_CREATED
    assert (await record(runs.stub, fork)).outcome == rs.RECORD_OUTCOME_UNCHANGED
    got = await runs.stub.GetRun(rs.GetRunRequest(run_id=fork.id, view=rs.RUN_VIEW_FULL))
    expected = run_to_pb(fork)
    for step in expected.execution_steps:
        step.run_id = fork.id  # the store fills in a step's empty run id
    assert got.run == expected
    assert got.run.forked_from.run_id == original.id and got.run.forked_from.sequence == 4
    assert got.run.execution_steps[0].session_history.dropped_turn_count == 5
    assert not got.run.HasField("token_usage_with_descendants")
    # A changed composition field is a different record: the (RUNNING -> terminal) rules apply as to any other.
    moved = dataclasses.replace(fork, forked_from=ForkOrigin(run_id=original.id, sequence=5))
    assert (await record(runs.stub, moved)).outcome == rs.RECORD_OUTCOME_IGNORED


def _bad(run: Run, **changes: object) -> Run:
    return dataclasses.replace(run, **changes)  # type: ignore[arg-type]


async def test_inconsistent_composition_fields_are_invalid_argument_naming_the_field(runs: RunsClient) -> None:
    root, first, _second, grandchild = tree()
    step = first.execution_steps[0]
    history = SessionHistory(session_id="other-session")
    cases: list[tuple[Run, str]] = [
        (_bad(first, root_run_id=""), "run.root_run_id"),
        (_bad(first, parent_tool_call_id=""), "run.parent_tool_call_id"),
        (_bad(first, depth=2), "run.depth"),
        (_bad(grandchild, depth=1), "run.root_run_id"),
        (_bad(first, depth=0), "run.depth"),
        (_bad(first, parent_run_id=first.id), "run.parent_run_id"),
        (_bad(first, parent_run_id="not-a-run-id"), "run.parent_run_id"),
        (_bad(root, root_run_id=new_run_id()), "run.root_run_id"),
        (_bad(root, depth=1), "run.depth"),
        (_bad(root, session_id="bad session"), "run.session_id"),
        (_bad(root, session_id="x" * 129), "run.session_id"),
        (_bad(root, forked_from=ForkOrigin(run_id=new_run_id(), sequence=0)), "run.forked_from.sequence"),
        (_bad(root, forked_from=ForkOrigin(run_id=root.id, sequence=2)), "run.forked_from.run_id"),
        (
            _bad(first, execution_steps=(dataclasses.replace(step, depth=1), *first.execution_steps[1:])),
            "run.execution_steps[0].depth",
        ),
        (
            _bad(first, execution_steps=(dataclasses.replace(step, payload=history), *first.execution_steps[1:])),
            "run.execution_steps[0].session_history.session_id",
        ),
        (
            _bad(root, token_usage_with_descendants=dataclasses.replace(root.token_usage, input_tokens=1)),
            "run.token_usage_with_descendants.input_tokens",
        ),
    ]
    for run, field in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await record(runs.stub, run)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (field, caught.value.details())
        assert (caught.value.details() or "").startswith(field + ":"), (field, caught.value.details())
        assert error_reason(caught.value) == "INVALID_ARGUMENT"
    assert list((await runs.stub.ListRuns(rs.ListRunsRequest())).runs) == []  # nothing was stored


async def test_list_sessions_totals_equal_the_sums_of_their_runs(runs: RunsClient) -> None:
    root, first, second, grandchild = tree()  # session chat-1: root and its three descendants
    later = top_level(agent="planner", session_id="chat-1", base=root, start_offset_s=30, status=RunStatus.FAILED)
    chat2 = [
        top_level(agent="clock", session_id="chat-2", base=root, start_offset_s=10 + i, user="alice") for i in range(3)
    ]
    bobs = top_level(agent="clock", session_id="chat-2", base=root, start_offset_s=20, user="bob")
    loose = top_level(agent="clock", base=root, start_offset_s=40)
    for run in (root, first, second, grandchild, later, *chat2, bobs, loose):
        await record(runs.stub, run)

    listed = await runs.stub.ListSessions(rs.ListSessionsRequest())
    # Most recently active first: chat-1 (30 s), bob's chat-2 (20 s), alice's chat-2 (12 s).
    assert [(s.id, s.user) for s in listed.sessions] == [("chat-1", "alice"), ("chat-2", "bob"), ("chat-2", "alice")]
    assert listed.next_page_token == ""
    chat1 = listed.sessions[0]
    assert (chat1.run_count, chat1.top_level_run_count) == (5, 2)
    assert list(chat1.agent_names) == ["planner", "researcher", "searcher", "writer"]
    assert chat1.last_run_id == later.id and chat1.last_status == run_pb2.RUN_STATUS_FAILED
    assert timestamp_from_pb(chat1.start_time) == root.start_time
    assert timestamp_from_pb(chat1.end_time) == max(
        r.end_time for r in (root, first, second, grandchild, later) if r.end_time is not None
    )

    for session in listed.sessions:
        of_session = await list_all(
            runs.stub,
            rs.ListRunsRequest(filter=f'session_id = "{session.id}" AND user = "{session.user}"'),
        )
        assert session.run_count == len(of_session)
        assert session.token_usage == pb_usage_sum(of_session)
        assert cost_from_pb(session.cost).amount == pb_cost_sum(of_session)
    # Each run is counted once: the root's totals with descendants are not added again.
    own = usage_sum([root, first, second, grandchild, later])
    assert chat1.token_usage.total_tokens == own.total_tokens
    assert cost_from_pb(chat1.cost).amount == cost_sum([root, first, second, grandchild, later])

    # Pages of one, filters over the sessions' runs, and ordering by first start.
    seen, token = [], ""
    while True:
        page = await runs.stub.ListSessions(rs.ListSessionsRequest(page_size=1, page_token=token))
        seen += [(s.id, s.user) for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == [(s.id, s.user) for s in listed.sessions]
    researched = await runs.stub.ListSessions(rs.ListSessionsRequest(filter='agent_name = "researcher"'))
    assert [(s.id, s.run_count) for s in researched.sessions] == [("chat-1", 5)]  # figures cover all its runs
    # A filter naming a tool: the sessions with a run that called it (an EXISTS within the EXISTS).
    members = {
        ("chat-1", "alice"): [root, first, second, grandchild, later],
        ("chat-2", "alice"): chat2,
        ("chat-2", "bob"): [bobs],
    }
    for tool in {t for group in members.values() for run in group for t in run.tools_used}:
        with_tool = await runs.stub.ListSessions(rs.ListSessionsRequest(filter=f'tool = "{tool}"'))
        expected = {key for key, group in members.items() if any(tool in run.tools_used for run in group)}
        assert {(s.id, s.user) for s in with_tool.sessions} == expected, tool
    by_start = await runs.stub.ListSessions(rs.ListSessionsRequest(order_by="start_time asc"))
    assert [(s.id, s.user) for s in by_start.sessions] == [("chat-1", "alice"), ("chat-2", "alice"), ("chat-2", "bob")]
    bad_requests = [
        (rs.ListSessionsRequest(order_by="cost"), "INVALID_ARGUMENT"),
        (rs.ListSessionsRequest(filter="bogus = 1"), "INVALID_FILTER"),
        (rs.ListSessionsRequest(page_size=-1), "INVALID_ARGUMENT"),
    ]
    first_page = await runs.stub.ListSessions(rs.ListSessionsRequest(page_size=1))
    # A page token only continues the request it came from.
    bad_requests.append(
        (rs.ListSessionsRequest(filter='user = "bob"', page_token=first_page.next_page_token), "INVALID_PAGE_TOKEN")
    )
    for request, reason in bad_requests:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await runs.stub.ListSessions(request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(caught.value) == reason


async def test_stats_by_session_count_every_run_once(runs: RunsClient) -> None:
    root, first, second, grandchild = tree()
    chat2 = top_level(agent="clock", session_id="chat-2", base=root, start_offset_s=3)
    loose = top_level(agent="clock", base=root, start_offset_s=4)
    everything = [root, first, second, grandchild, chat2, loose]
    for run in everything:
        await record(runs.stub, run)
    start = root.start_time - timedelta(hours=1)
    request = rs.GetRunStatsRequest(group_by=rs.STATS_GROUP_BY_SESSION)
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(start + timedelta(days=1))
    groups = {g.key: g for g in (await runs.stub.GetRunStats(request)).groups}
    assert sorted(groups) == ["", "chat-1", "chat-2"]
    assert groups["chat-1"].run_count == 4  # child runs are runs
    assert groups["chat-1"].token_usage.total_tokens == usage_sum([root, first, second, grandchild]).total_tokens
    assert cost_from_pb(groups["chat-1"].cost).amount == cost_sum([root, first, second, grandchild])
    assert groups[""].run_count == 1 and groups["chat-2"].run_count == 1
    # Percentiles by session are exact on both backends (percentile_cont over the session's durations).
    durations = sorted(
        r.duration // timedelta(microseconds=1) for r in (root, first, second, grandchild) if r.duration is not None
    )
    for field, q in (("duration_p50", 0.5), ("duration_p95", 0.95)):
        expected = micros_to_duration(percentile_cont(durations, q))
        assert duration_from_pb(getattr(groups["chat-1"], field)) == expected, field
    # Summed over every group: each run's own usage once, never a parent's totals with descendants again.
    assert sum(g.token_usage.total_tokens for g in groups.values()) == usage_sum(everything).total_tokens
    sessions = {s.id: s for s in (await runs.stub.ListSessions(rs.ListSessionsRequest())).sessions}
    for key in ("chat-1", "chat-2"):
        assert sessions[key].token_usage == groups[key].token_usage
        assert sessions[key].cost.amount == groups[key].cost.amount
        assert sessions[key].run_count == groups[key].run_count


async def test_users_see_only_their_sessions_and_their_descendants(db_url: str, tmp_path: Path) -> None:
    client = await start_runs_client(db_url, tmp_path, auth=token_auth(tmp_path / "tokens.jsonl"))
    tokens = {"svc": SERVICE, "alice": ALICE, "bob": BOB}
    channels = {name: channel(client.address, token=token) for name, token in tokens.items()}
    try:
        service, alice, bob = (rs_grpc.RunsServiceStub(channels[n]) for n in ("svc", "alice", "bob"))
        root, first, second, grandchild = tree()
        bobs = top_level(user="bob", session_id="chat-1", base=root, start_offset_s=9)
        for run in (root, first, second, grandchild, bobs):
            await record(service, run)
        assert [(s.id, s.user) for s in (await alice.ListSessions(rs.ListSessionsRequest())).sessions] == [
            ("chat-1", "alice")
        ]
        bob_sessions = (await bob.ListSessions(rs.ListSessionsRequest())).sessions
        assert [(s.id, s.user, s.run_count) for s in bob_sessions] == [("chat-1", "bob", 1)]
        mine = await alice.GetRun(rs.GetRunRequest(run_id=root.id, include_descendants=True))
        assert len(mine.descendants) == 3
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await bob.GetRun(rs.GetRunRequest(run_id=root.id, include_descendants=True))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        page = await alice.ListSessions(rs.ListSessionsRequest(page_size=1))
        assert page.next_page_token == ""
    finally:
        for ch in channels.values():
            await ch.close()
        await client.channel.close()
        await client.server.stop(0)
