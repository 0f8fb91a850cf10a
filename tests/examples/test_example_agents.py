"""Each example agent (examples/agents/*.prompt) runs end to end with the offline TestModel, on the real MCP servers of
examples/mcp.json, through a real ExecutionService and RunsService: it completes, its tool results are what the server
really returned, and RunsService stores exactly what was streamed.

The files are used as shipped; the only inputs are the environment variables examples/mcp.json reads
(AGENTRUN_GIT_REPOSITORY, AGENTRUN_FILES_ROOT) and the agents' own template variables.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2

from tests.support.stack import running_stack, steps_of

REPO = Path(__file__).resolve().parents[2]
AGENTS_DIR = REPO / "examples" / "agents"
MCP_CONFIG = REPO / "examples" / "mcp.json"

Results = dict[str, run_pb2.ToolCallFinished]


@dataclass(frozen=True)
class Example:
    agent: str
    task: str
    # Prepares what the agent works on; returns the run's template variables.
    prepare: Callable[[Path, pytest.MonkeyPatch], dict[str, str]]
    # Checks the successful tool results against what the server must have returned.
    check: Callable[[Results, Path], None]


# --- clock: mcp-server-time -----------------------------------------------------------------------------------


def prepare_clock(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return {}


def check_clock(results: Results, tmp: Path) -> None:
    now = json.loads(results["get_current_time"].result_text)
    assert now["timezone"] == "Europe/Paris"
    reported = datetime.fromisoformat(now["datetime"])
    assert abs((reported - datetime.now(ZoneInfo("Europe/Paris"))).total_seconds()) < 120, now
    assert reported.utcoffset() == datetime.now(ZoneInfo("Europe/Paris")).utcoffset()
    converted = json.loads(results["convert_time"].result_text)
    assert converted["source"]["datetime"].endswith(reported.isoformat()[-6:])  # the same zone's offset
    assert "time_difference" in converted


# --- repo-reviewer: mcp-server-git on a repository made here ----------------------------------------------------


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=Test Author", "-c", "user.email=author@example.com", "-c", "commit.gpgsign=false"]
    done = subprocess.run(["git", *identity, *args], cwd=repo, capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


def prepare_repo_reviewer(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    repo = tmp / "project"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "greet.py").write_text("def greet(name):\n    return 'hello, ' + name\n")
    git(repo, "add", "greet.py")
    git(repo, "commit", "-q", "-m", "Add greet() for the reviewer")
    monkeypatch.setenv("AGENTRUN_GIT_REPOSITORY", str(repo))
    return {"repo_path": str(repo), "max_commits": "1"}


def check_repo_reviewer(results: Results, tmp: Path) -> None:
    head = git(tmp / "project", "rev-parse", "HEAD")
    log = results["git_log"].result_text
    assert f"Commit: {head}" in log and "Add greet() for the reviewer" in log and "Test Author" in log
    show = results["git_show"].result_text
    assert f"commit {head}" in show and "+++ b/greet.py" in show and "+    return 'hello, ' + name" in show
    assert "On branch main" in results["git_status"].result_text


# --- files: examples/mcp_servers/filesystem_server.py on a directory made here ----------------------------------


def prepare_files(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    root = tmp / "workspace"
    (root / "docs").mkdir(parents=True)
    (root / "notes.txt").write_text("remember the milk\n")
    (root / "docs" / "plan.md").write_text("# Plan\n")
    monkeypatch.setenv("AGENTRUN_FILES_ROOT", str(root))
    return {"root": str(root)}


def check_files(results: Results, tmp: Path) -> None:
    root = (tmp / "workspace").resolve()
    assert results["list_allowed_directories"].result_text == str(root)
    listing = results["list_directory"].result_text
    assert listing.splitlines() == ["[DIR]  docs/", "[FILE] notes.txt (18 bytes)"]
    assert results["directory_tree"].result_text.splitlines() == ["./", "  docs/", "    plan.md", "  notes.txt"]


# --- meeting-planner: the clock agent as a sub-agent (each call a child run), on mcp-server-time ------------------


def prepare_meeting_planner(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return {"cities": "Lima, Paris"}


def check_meeting_planner(results: Results, tmp: Path) -> None:
    asked = results["clock"]  # the sub-agent's answer: the clock run's final response
    assert asked.child_run_id and asked.result_text.startswith("Called 2 tools: get_current_time -> ")
    check_clock(results, tmp)  # the clock run's own tool results, streamed at depth 1


EXAMPLES = [
    Example("clock", "What time is it in Paris?", prepare_clock, check_clock),
    Example("repo-reviewer", "Review the latest commit.", prepare_repo_reviewer, check_repo_reviewer),
    Example("files", "What is in this directory?", prepare_files, check_files),
    Example("meeting-planner", "Find a time for a one-hour call.", prepare_meeting_planner, check_meeting_planner),
]


def test_every_example_agent_is_covered() -> None:
    assert sorted(p.stem for p in AGENTS_DIR.glob("*.prompt")) == sorted(e.agent for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.agent for e in EXAMPLES])
async def test_example_agent_runs_offline_end_to_end(
    example: Example, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # as the demo and `agentrun serve` run: examples/mcp.json's paths are relative to it
    monkeypatch.delenv("AGENTRUN_GIT_REPOSITORY", raising=False)
    monkeypatch.delenv("AGENTRUN_FILES_ROOT", raising=False)
    variables = example.prepare(tmp_path, monkeypatch)
    async with running_stack(tmp_path / "stack", {}, agents_dir=AGENTS_DIR, mcp_config=MCP_CONFIG) as stack:
        events = await stack.execute(agent_name=example.agent, task=example.task, model="test", variables=variables)

        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "run_started" and kinds[-1] == "run_finished", kinds
        started, finished = events[0].run_started, events[-1].run_finished
        assert finished.status == run_pb2.RUN_STATUS_COMPLETED, finished.error
        source = (AGENTS_DIR / f"{example.agent}.prompt").read_bytes()
        assert started.agent_version == "sha256:" + hashlib.sha256(source).hexdigest()  # the shipped file
        assert started.model_name == "test"

        steps = steps_of(events)
        results = {
            s.tool_result.tool_name: s.tool_result
            for s in steps
            if s.WhichOneof("payload") == "tool_result" and not s.tool_result.is_error
        }
        assert results, [s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result"]
        example.check(results, tmp_path)

        own = [s for s in steps if s.depth == 0]  # a sub-agent's steps are stored with its own run
        stored = await stack.stored_run(started.run_id)
        assert_stored_as_streamed(stored, started, finished, own)
        for call in (s.tool_call for s in own if s.HasField("tool_call") and s.tool_call.child_run_id):
            child = await stack.stored_run(call.child_run_id)
            assert (child.parent_run_id, child.parent_tool_call_id) == (stored.id, call.call_id)
            assert child.model_name == "test"  # the parent's model override holds for its sub-agents
            assert list(child.execution_steps) == [at_depth_0(s) for s in steps if s.run_id == child.id]


def assert_stored_as_streamed(
    stored: run_pb2.Run, started: ex.RunStarted, finished: ex.RunFinished, steps: list[run_pb2.ExecutionStep]
) -> None:
    assert stored.id == started.run_id == finished.run_id
    assert (stored.agent_name, stored.agent_version, stored.model_name) == (
        started.agent_name,
        started.agent_version,
        started.model_name,
    )
    assert (stored.start_time, stored.trace_id) == (started.start_time, started.trace_id)
    assert stored.status == finished.status == run_pb2.RUN_STATUS_COMPLETED
    assert stored.final_response == finished.final_response != ""
    assert stored.token_usage == finished.token_usage and stored.token_usage.total_tokens > 0
    assert (stored.end_time, stored.duration) == (finished.end_time, finished.duration)
    assert stored.steps_taken == finished.steps_taken
    assert list(stored.execution_steps) == steps
    streamed_results = [s.tool_result for s in steps if s.WhichOneof("payload") == "tool_result"]
    assert len(stored.tool_calls) == finished.tool_call_count == len(streamed_results)
    by_id = {call.id: call for call in stored.tool_calls}
    for result in streamed_results:
        assert by_id[result.call_id].name == result.tool_name
        assert by_id[result.call_id].result == result.result_text


def at_depth_0(step: run_pb2.ExecutionStep) -> run_pb2.ExecutionStep:
    """A sub-agent's step as its own run stores it (its parent's stream showed it at its depth)."""
    copy = run_pb2.ExecutionStep()
    copy.CopyFrom(step)
    copy.depth = 0
    return copy
