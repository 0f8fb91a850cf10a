"""`agentrun runs show` (trees), `runs list --session/--parent/--root`, `sessions list|show`, `runs diff` and stats by
session, against a real RunsService (SQLite and PostgreSQL) holding recorded trees and sessions."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs
from typer.testing import CliRunner, Result

from agentrun_cli.main import app
from agentrun_core.domain import FinalResponse, ForkOrigin, Run, RunResumed, RunStatus, ToolCallStarted
from agentrun_core.ids import new_run_id
from agentrun_core.proto_convert import run_to_pb
from tests.runs_service.conftest import db_url, pg_server  # noqa: F401  (fixtures: a database on each backend)
from tests.support.composition import child_of, cost_sum, link_child, top_level, usage_sum, with_totals
from tests.support.run_factory import make_run
from tests.support.runs_thread import ServerThread

WIDE = {"COLUMNS": "250", "AGENTRUN_TOKEN": "", "AGENTRUN_TLS_CA": ""}


@dataclasses.dataclass
class Recorded:
    server: ServerThread
    root: Run
    first: Run
    second: Run
    grandchild: Run
    later: Run
    other: Run
    loose: Run

    def record(self, run: Run) -> None:
        self.server.stub.RecordRun(rs.RecordRunRequest(run=run_to_pb(run)), timeout=30)


@pytest.fixture
def recorded(db_url: str, tmp_path: Path) -> Iterator[Recorded]:  # noqa: F811
    """Session chat-1: a root with two sub-agent runs (one with its own child), then a later top-level run; session
    chat-2: one run; and a run outside any session."""
    server = ServerThread(db_url, tmp_path)
    root = top_level(agent="planner", session_id="chat-1")
    first = child_of(root, "call-001", agent="researcher", start_offset_s=0.5)
    second = child_of(root, "call-002", agent="writer", start_offset_s=0.8)
    grandchild = child_of(first, "call-001", agent="searcher", start_offset_s=0.1)
    first = with_totals(link_child(first, grandchild), [grandchild])
    root = with_totals(link_child(link_child(root, first), second), [first, second, grandchild])
    later = top_level(agent="planner", session_id="chat-1", base=root, start_offset_s=30, status=RunStatus.FAILED)
    other = top_level(agent="clock", session_id="chat-2", base=root, start_offset_s=10)
    loose = top_level(agent="clock", base=root, start_offset_s=40)
    state = Recorded(server, root, first, second, grandchild, later, other, loose)
    try:
        for run in (root, first, second, grandchild, later, other, loose):
            state.record(run)
        yield state
    finally:
        server.close()


def cli(runner: CliRunner, server: ServerThread, *args: str) -> Result:
    result = runner.invoke(app, ["--runs-target", server.target, *args], env=WIDE)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def count(value: int) -> str:
    return f"{value:,}"


def test_runs_show_prints_the_tree_and_own_vs_with_descendants_usage(recorded: Recorded) -> None:
    runner = CliRunner()
    result = cli(runner, recorded.server, "runs", "show", recorded.root.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    tree = [recorded.root, recorded.first, recorded.grandchild, recorded.second]
    own_total = recorded.root.token_usage.total_tokens
    everything = usage_sum(tree).total_tokens
    own_row = next(line for line in out.splitlines() if line.strip().startswith("own "))
    all_row = next(line for line in out.splitlines() if line.strip().startswith("with descendants"))
    assert own_row.split()[-1] == count(own_total) and all_row.split()[-1] == count(everything)
    assert f"{cost_sum(tree).normalize():f} USD with descendants" in out
    assert "runs (3 under this one)" in out
    lines = out.splitlines()
    # Each run of the tree on its own line, with its status and its own tokens; the grandchild under its parent.
    rows = {run.id: next(i for i, line in enumerate(lines) if run.id in line and "tokens" in line) for run in tree}
    assert rows[recorded.root.id] < rows[recorded.first.id] < rows[recorded.grandchild.id] < rows[recorded.second.id]
    for run in tree[1:]:
        line = lines[rows[run.id]]
        assert run.agent_name in line and "COMPLETED" in line
        assert f"{count(run.token_usage.total_tokens)} tokens" in line and f"(call {run.parent_tool_call_id})" in line
    assert lines[rows[recorded.grandchild.id]].index("searcher") > lines[rows[recorded.first.id]].index("researcher")
    # The parent's tool call names the child it started.
    assert f"→ child run {recorded.first.id}" in out


def test_runs_show_of_a_child_names_its_parent_and_a_leaf_has_no_tree(recorded: Recorded) -> None:
    runner = CliRunner()
    out = cli(runner, recorded.server, "runs", "show", recorded.grandchild.id).stdout
    parent_line = next(line for line in out.splitlines() if line.startswith("parent"))
    assert "researcher" in parent_line and "COMPLETED" in parent_line and recorded.first.id in parent_line
    assert "(tool call call-001)" in parent_line
    root_line = next(line for line in out.splitlines() if line.startswith("root"))
    assert recorded.root.id in root_line
    assert "with descendants" not in out and "under this one" not in out
    shown = json.loads(cli(runner, recorded.server, "runs", "show", recorded.root.id, "--json").stdout)
    assert [d["id"] for d in shown["descendants"]] == [recorded.first.id, recorded.grandchild.id, recorded.second.id]
    assert shown["tokenUsageWithDescendants"]["totalTokens"] == str(
        usage_sum([recorded.root, recorded.first, recorded.second, recorded.grandchild]).total_tokens
    )
    leaf = json.loads(cli(runner, recorded.server, "runs", "show", recorded.loose.id, "--json").stdout)
    assert leaf["id"] == recorded.loose.id and "descendants" not in leaf


def test_runs_list_session_parent_root_and_top_level_filters(recorded: Recorded) -> None:
    runner = CliRunner()

    def ids(*options: str) -> list[str]:
        result = cli(runner, recorded.server, "runs", "list", *options, "--order-by", "start_time asc", "--json")
        assert result.exit_code == 0, result.output
        return [run["id"] for run in json.loads(result.stdout)["runs"]]

    r = recorded
    assert ids("--session", "chat-1") == [r.root.id, r.first.id, r.grandchild.id, r.second.id, r.later.id]
    assert ids("--session", "chat-1", "--top-level") == [r.root.id, r.later.id]
    assert ids("--parent", r.root.id) == [r.first.id, r.second.id]
    assert ids("--root", r.root.id) == [r.first.id, r.grandchild.id, r.second.id]
    assert ids("--top-level", "--agent", "clock") == [r.other.id, r.loose.id]
    table = cli(runner, recorded.server, "runs", "list", "--parent", r.root.id).stdout
    assert r.first.id in table and r.second.id in table and r.grandchild.id not in table


def test_sessions_list_totals_equal_their_runs(recorded: Recorded) -> None:
    runner = CliRunner()
    result = cli(runner, recorded.server, "sessions", "list", "--json")
    assert result.exit_code == 0, result.output
    sessions = json.loads(result.stdout)["sessions"]
    assert [s["id"] for s in sessions] == ["chat-1", "chat-2"]  # most recently active first
    r = recorded
    chat1 = [r.root, r.first, r.second, r.grandchild, r.later]
    assert sessions[0]["runCount"] == "5" and sessions[0]["topLevelRunCount"] == "2"
    assert sessions[0]["tokenUsage"]["totalTokens"] == str(usage_sum(chat1).total_tokens)
    assert sessions[0]["cost"]["amount"] == f"{cost_sum(chat1).normalize():f}"
    assert sessions[0]["lastStatus"] == "RUN_STATUS_FAILED" and sessions[0]["lastRunId"] == r.later.id
    assert sessions[0]["agentNames"] == ["planner", "researcher", "searcher", "writer"]

    table = cli(runner, recorded.server, "sessions", "list").stdout
    chat1_line = next(line for line in table.splitlines() if line.startswith("chat-1"))
    assert "2 (+3)" in chat1_line and count(usage_sum(chat1).total_tokens) in chat1_line and "FAILED" in chat1_line
    narrow = runner.invoke(
        app, ["--runs-target", recorded.server.target, "sessions", "list"], env={**WIDE, "COLUMNS": "80"}
    )
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    assert "FAILED" in narrow.stdout and "COMPLETED" in narrow.stdout
    only = json.loads(cli(runner, recorded.server, "sessions", "list", "--agent", "clock", "--json").stdout)
    assert [s["id"] for s in only["sessions"]] == ["chat-2"]
    paged = json.loads(cli(runner, recorded.server, "sessions", "list", "--limit", "1", "--all", "--json").stdout)
    assert [s["id"] for s in paged["sessions"]] == ["chat-1", "chat-2"]


def test_sessions_show_lists_the_runs_in_order_with_the_time_span(recorded: Recorded) -> None:
    runner = CliRunner()
    r = recorded
    shown = json.loads(cli(runner, recorded.server, "sessions", "show", "chat-1", "--json").stdout)
    order = [r.root, r.first, r.grandchild, r.second, r.later]
    assert [run["id"] for run in shown["runs"]] == [run.id for run in order]
    assert shown["session"]["tokenUsage"]["totalTokens"] == str(usage_sum(order).total_tokens)

    out = cli(runner, recorded.server, "sessions", "show", "chat-1").stdout
    assert r.later.end_time is not None
    span = (r.later.end_time - r.root.start_time).total_seconds()
    assert f"{span:.2f} s" in out or f"{round(span)} s" in out
    lines = out.splitlines()
    positions = [next(i for i, line in enumerate(lines) if run.id in line) for run in order]
    assert positions == sorted(positions)
    assert "└ searcher" in lines[positions[2]] and "  └ researcher" in lines[positions[1]]

    missing = cli(runner, recorded.server, "sessions", "show", "no-such-session")
    assert missing.exit_code == 2 and "no session 'no-such-session'" in missing.stderr


def test_runs_diff_starts_at_the_first_differing_step(recorded: Recorded) -> None:
    original = make_run(agent="clock", model_calls=4, tool_calls=3)
    steps = list(original.execution_steps)
    fifth = steps[4]  # the second turn's tool call: the fork asked for another city
    assert isinstance(fifth.payload, ToolCallStarted)
    berlin = '{"timezone": "Europe/Berlin"}'
    steps[4] = dataclasses.replace(fifth, payload=dataclasses.replace(fifth.payload, arguments_json=berlin))
    last = steps[-1]
    steps[-1] = dataclasses.replace(last, payload=FinalResponse(text="It is 13:00 in Paris."))
    fork_id = new_run_id()
    fork = dataclasses.replace(
        original,
        id=fork_id,
        forked_from=ForkOrigin(run_id=original.id, sequence=4),
        start_time=original.start_time + timedelta(minutes=5),
        end_time=(original.end_time or original.start_time) + timedelta(minutes=5, seconds=2),
        duration=(original.duration or timedelta(0)) + timedelta(seconds=2),
        execution_steps=tuple(
            dataclasses.replace(s, run_id=fork_id, time=s.time + timedelta(minutes=5)) for s in steps
        ),
        final_response="It is 13:00 in Paris.",
        token_usage=dataclasses.replace(original.token_usage, total_tokens=original.token_usage.total_tokens + 100),
    )
    recorded.record(original)
    recorded.record(fork)
    runner = CliRunner()

    result = cli(runner, recorded.server, "runs", "diff", original.id, fork.id)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "B was forked from A at step 4" in out
    assert "steps 1-4 are the same; they differ from step 5:" in out
    lines = out.splitlines()
    first_row = next(i for i, line in enumerate(lines) if "they differ from step 5" in line) + 2
    assert lines[first_row].split()[:2] == ["5", "≠"] and '{"timezone":"Europe/Berlin"}' in lines[first_row]
    assert not any(line.split()[:1] == ["4"] for line in lines[first_row:]), "rows start at the first difference"
    tokens_row = next(line for line in lines if line.startswith("tokens"))
    assert tokens_row.split()[-1] == "+100"
    assert "It is 13:00 in Paris." in out and "It is 14:03 in Paris." in out

    data = json.loads(cli(runner, recorded.server, "runs", "diff", original.id, fork.id, "--json").stdout)
    assert (data["identicalSteps"], data["firstDifference"]) == (4, 5)
    assert [s["position"] for s in data["steps"]] == list(range(5, len(steps) + 1))
    assert [s["position"] for s in data["steps"] if not s["same"]] == [5, len(steps)]
    assert data["b"]["finalResponse"] == "It is 13:00 in Paris." and data["relation"].startswith("B was forked")

    same = json.loads(cli(runner, recorded.server, "runs", "diff", original.id, original.id, "--json").stdout)
    assert same["firstDifference"] is None and same["steps"] == []
    unknown = cli(runner, recorded.server, "runs", "diff", original.id, new_run_id())
    assert unknown.exit_code == 2 and "NOT_FOUND" in unknown.stderr


def test_runs_diff_leaves_out_the_resumptions_of_a_durable_run(recorded: Recorded) -> None:
    """A fork does not repeat its original's `resumed` steps (they tell how the original executed, not what it did):
    the diff compares the steps without them, so a fork of a resumed run is the same up to where it really differs
    (found by an outside audit: the fork's numbers are one lower after the original's resumption)."""
    fork = make_run(agent="clock", model_calls=3, tool_calls=2)
    steps = list(fork.execution_steps)
    marker = dataclasses.replace(
        steps[4], payload=RunResumed(gap=timedelta(seconds=8), replica="b", previous_replica="a")
    )
    resumed = [*steps[:5], marker, *steps[5:-1], dataclasses.replace(steps[-1], payload=FinalResponse("changed"))]
    original_id = new_run_id()
    original = dataclasses.replace(
        fork,
        id=original_id,
        execution_steps=tuple(
            dataclasses.replace(step, run_id=original_id, sequence=index) for index, step in enumerate(resumed, 1)
        ),
        final_response="changed",
    )
    recorded.record(original)
    recorded.record(fork)
    data = json.loads(cli(CliRunner(), recorded.server, "runs", "diff", original.id, fork.id, "--json").stdout)
    assert (data["identicalSteps"], data["firstDifference"]) == (len(steps) - 1, len(steps))
    (last,) = data["steps"]
    assert (last["a"]["sequence"], last["b"]["sequence"]) == (len(steps) + 1, len(steps))


def test_runs_stats_by_session(recorded: Recorded) -> None:
    runner = CliRunner()
    start = (recorded.root.start_time - timedelta(hours=1)).isoformat()
    end = (recorded.root.start_time + timedelta(hours=1)).isoformat()
    result = cli(runner, recorded.server, "runs", "stats", "--by", "session", "--from", start, "--to", end, "--json")
    assert result.exit_code == 0, result.output
    groups = {g["key"]: g for g in json.loads(result.stdout)["groups"]}
    assert sorted(groups) == ["", "chat-1", "chat-2"]
    r = recorded
    assert groups["chat-1"]["runCount"] == "5"
    assert groups["chat-1"]["tokenUsage"]["totalTokens"] == str(
        usage_sum([r.root, r.first, r.second, r.grandchild, r.later]).total_tokens
    )
