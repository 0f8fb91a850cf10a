"""Each command against scripted services: requests sent, output printed, exit codes."""

from __future__ import annotations

import json

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from typer.testing import CliRunner

from agentrun_cli.main import app
from tests.cli import fake_services, samples
from tests.cli.cli_helpers import WIDE, invoke
from tests.cli.fake_services import FakeServer


def test_run_prints_one_plain_line_per_step_when_not_a_tty(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(
        runner, fake, "run", "clock", "What time is it in Paris?", "--var", "city=Paris", "--label", "team=docs",
        "--model", "test",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"▶ run {samples.RUN_ID} · clock@0123456789ab · test · trace {samples.TRACE_ID}")
    assert lines[1].startswith("[1] model_call gemini-2.5-flash")
    assert lines[2] == '[2] tool_call time/get_current_time {"timezone":"Europe/Paris"}'
    assert lines[3].startswith("[3] tool_result get_current_time ✓ 12 ms ")
    assert lines[5] == "[5] final_response It is 14:00 (CET) on Wednesday in Paris."
    assert "status: COMPLETED" in lines and f"run id: {samples.RUN_ID}" in lines
    request = fake.calls.requests[0]
    assert isinstance(request, ex_pb2.ExecuteAgentRequest)
    assert request.agent_name == "clock" and request.task == "What time is it in Paris?"
    assert dict(request.variables) == {"city": "Paris"} and dict(request.labels) == {"team": "docs"}
    assert request.model == "test" and not request.detach


def test_run_json_prints_each_event_as_a_json_line(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "run", "clock", "time?", "--json")
    assert result.exit_code == 0
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(events) == 7
    assert events[0]["runStarted"]["runId"] == samples.RUN_ID
    assert events[2]["step"]["toolCall"]["argumentsJson"] == '{"timezone": "Europe/Paris"}'
    assert events[-1]["runFinished"]["status"] == "RUN_STATUS_COMPLETED"


def test_run_detach_prints_only_the_run_id(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "run", "clock", "time?", "--detach")
    assert result.exit_code == 0
    assert result.stdout == f"{samples.RUN_ID}\n"
    request = fake.calls.requests[0]
    assert isinstance(request, ex_pb2.ExecuteAgentRequest) and request.detach


def test_token_is_sent_as_bearer_metadata(runner: CliRunner, fake: FakeServer) -> None:
    invoke(runner, fake, "runs", "show", samples.RUN_ID, env={"AGENTRUN_TOKEN": "s3cret"})
    invoke(runner, fake, "--token", "flag-token", "agents", "list")
    invoke(runner, fake, "runs", "list")
    assert fake.calls.metadata[0]["authorization"] == "Bearer s3cret"
    assert fake.calls.metadata[1]["authorization"] == "Bearer flag-token"
    assert "authorization" not in fake.calls.metadata[2]


def test_runs_show(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "show", samples.RUN_ID)
    assert result.exit_code == 0
    assert samples.TRACE_ID in result.stdout and "2,570" in result.stdout and "tool_result" in result.stdout
    request = fake.calls.requests[0]
    assert isinstance(request, runs_pb2.GetRunRequest) and request.view == runs_pb2.RUN_VIEW_FULL


def test_runs_show_json_uses_proto_json_names(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "show", samples.RUN_ID, "--json")
    run = json.loads(result.stdout)
    assert run["id"] == samples.RUN_ID and run["traceId"] == samples.TRACE_ID
    assert run["tokenUsage"]["inputTokens"] == "2500"  # int64 is a string in proto3 JSON
    assert [s["sequence"] for s in run["executionSteps"]] == [1, 2, 3, 4, 5]


def test_runs_list_table_filter_and_page_hint(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(
        runner, fake, "runs", "list", "--agent", "clock", "--status", "completed", "--user", 'a"b', "--limit", "1",
        "--order-by", "cost desc",
    )  # fmt: skip
    assert result.exit_code == 0
    assert samples.RUN_ID in result.stdout and "COMPLETED" in result.stdout
    assert "--page-token page-2" in result.stdout
    request = fake.calls.requests[0]
    assert isinstance(request, runs_pb2.ListRunsRequest)
    assert request.filter == 'agent_name = "clock" AND status = RUN_STATUS_COMPLETED AND user = "a\\"b"'
    assert (request.page_size, request.order_by) == (1, "cost desc")


def test_runs_list_at_80_columns_shows_every_column_and_json_has_the_full_id(
    runner: CliRunner, fake: FakeServer
) -> None:
    result = invoke(runner, fake, "runs", "list", "--limit", "1", env={"COLUMNS": "80"})
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert lines[0].split() == ["id", "agent", "status", "model", "start", "duration", "tokens", "cost", "tools"]
    assert lines[1].split()[:3] == ["…4a5b6c7d", "clock", "COMPLETED"] and "2,570" in lines[1]
    assert "--json shows them in full" in result.stdout
    listed = json.loads(invoke(runner, fake, "runs", "list", "--limit", "1", "--json", env={"COLUMNS": "80"}).stdout)
    assert listed["runs"][0]["id"] == samples.RUN_ID


def test_runs_list_all_follows_page_tokens(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "list", "--limit", "1", "--all", "--json")
    data = json.loads(result.stdout)
    assert [r["agentName"] for r in data["runs"]] == ["clock", "repo-reviewer"]
    assert data["nextPageToken"] == ""
    assert [r.page_token for r in fake.calls.requests] == ["", "page-2"]  # type: ignore[attr-defined]


def test_runs_stats_default_is_per_agent_and_per_model(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "stats", "--since", "24h")
    assert result.exit_code == 0
    assert "by agent" in result.stdout and "by model" in result.stdout
    assert "agent-key" in result.stdout and "95.0%" in result.stdout and "0.25 USD" in result.stdout
    groups = [r.group_by for r in fake.calls.requests]  # type: ignore[attr-defined]
    assert groups == [runs_pb2.STATS_GROUP_BY_AGENT, runs_pb2.STATS_GROUP_BY_MODEL]
    first = fake.calls.requests[0]
    assert isinstance(first, runs_pb2.GetRunStatsRequest)
    assert first.end_time.seconds - first.start_time.seconds == 24 * 3600


def test_runs_stats_by_day_json(runner: CliRunner, fake: FakeServer) -> None:
    args = ["runs", "stats", "--by", "day", "--from", "2026-11-01", "--to", "2026-11-08", "--json"]
    result = invoke(runner, fake, *args)
    data = json.loads(result.stdout)
    assert data["groups"][0]["key"] == "day-key"
    request = fake.calls.requests[0]
    assert isinstance(request, runs_pb2.GetRunStatsRequest)
    assert request.group_by == runs_pb2.STATS_GROUP_BY_DAY
    assert request.start_time.ToJsonString() == "2026-11-01T00:00:00Z"


def test_runs_tools(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "tools")
    assert "get_current_time" in result.stdout and "5.0%" in result.stdout and "12 ms" in result.stdout


def test_agents_list_shows_load_errors(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "agents", "list")
    assert result.exit_code == 0
    assert "clock" in result.stdout and "time/*" in result.stdout and "6 steps" in result.stdout
    assert "examples/agents/broken.prompt: invalid YAML front matter" in result.stdout
    data = json.loads(invoke(runner, fake, "agents", "list", "--json").stdout)
    assert data["errors"][0]["path"] == "examples/agents/broken.prompt"


def test_runs_watch_replays_from_a_sequence(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "watch", samples.RUN_ID, "--from", "3")
    assert result.exit_code == 0
    steps = [line for line in result.stdout.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in steps] == ["[3]", "[4]", "[5]"]
    assert "status: COMPLETED" in result.stdout


FINISHED_RUN_ID = "0193a5c4-7d2e-7b3a-9c1d-00000000f1d0"


def test_runs_watch_of_a_run_that_finished_earlier_shows_the_stored_run(runner: CliRunner, fake: FakeServer) -> None:
    """Before: exit 2, "NOT_FOUND: run ... not found among the runs the execution service follows ...; a run that
    finished earlier is read from RunsService (GetRun)"."""
    stored = samples.clock_run()
    stored.id = FINISHED_RUN_ID
    fake.runs.runs[FINISHED_RUN_ID] = stored
    result = invoke(runner, fake, "runs", "watch", FINISHED_RUN_ID)
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == f"run {FINISHED_RUN_ID} already finished (COMPLETED); showing the stored run"
    shown = invoke(runner, fake, "runs", "show", FINISHED_RUN_ID)
    assert result.stdout == shown.stdout
    as_json = invoke(runner, fake, "runs", "watch", FINISHED_RUN_ID, "--json")
    assert json.loads(as_json.stdout)["id"] == FINISHED_RUN_ID


def test_runs_watch_of_a_run_stored_nowhere_is_not_found(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "watch", FINISHED_RUN_ID)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: NOT_FOUND: run '{FINISHED_RUN_ID}' is not live"


def test_runs_watch_reattaches_after_a_sub_agents_step(runner: CliRunner, fake: FakeServer) -> None:
    child = "0193a5c4-0000-7000-8000-00000000c0de"
    result = invoke(runner, fake, "runs", "watch", samples.RUN_ID, "--from-run", child, "--from", "4")
    assert result.exit_code == 0
    [request] = [r for r in fake.calls.requests if isinstance(r, ex_pb2.WatchRunRequest)]
    assert (request.run_id, request.from_run_id, request.from_sequence) == (samples.RUN_ID, child, 4)


def test_runs_watch_after_the_last_step_of_each_run(runner: CliRunner, fake: FakeServer) -> None:
    child = "0193a5c4-0000-7000-8000-00000000c0de"
    args = ["runs", "watch", samples.RUN_ID, "--after", f"{samples.RUN_ID}:2", "--after", f"{child}:3"]
    result = invoke(runner, fake, *args)
    assert result.exit_code == 0
    [request] = [r for r in fake.calls.requests if isinstance(r, ex_pb2.WatchRunRequest)]
    assert dict(request.last_received) == {samples.RUN_ID: 2, child: 3}
    assert (request.from_sequence, request.from_run_id) == (0, "")

    refused = invoke(runner, fake, "runs", "watch", samples.RUN_ID, "--after", "no-sequence")
    assert refused.exit_code == 2 and "RUN_ID:SEQUENCE" in refused.stderr
    refused = invoke(runner, fake, "runs", "watch", samples.RUN_ID, "--after", f"{child}:3", "--from", "2")
    assert refused.exit_code == 2 and "leave out --from" in refused.stderr


def test_runs_cancel_after_turn(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "cancel", "0193a5c4-0000-7000-8000-00000000abcd", "--after-turn")
    assert result.exit_code == 0
    assert "cancel requested" in result.stdout
    assert fake.calls.cancels[0].mode == ex_pb2.CANCEL_MODE_AFTER_TURN


def test_a_run_whose_stream_is_lost_says_how_to_watch_it_again(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "run", "lost", "what time is it")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    run_id = fake_services.SLOW_RUN_ID
    assert lines[0].startswith(f"error: lost the stream of run {run_id}: ExecutionService at {fake.target} went away")
    assert "Socket closed" in lines[0] and "agentrun serve all" not in result.stderr
    assert f"agentrun runs show {run_id}" in lines[1]
    step = samples.clock_steps(run_id)[1]
    assert f"agentrun runs watch {run_id} --from {step.sequence + 1}" in lines[2], lines
    assert f"agentrun --execution-target HOST:PORT runs watch {run_id} --from {step.sequence + 1}" in lines[2]


def test_chat_with_no_input_offers_no_session_that_was_never_created(runner: CliRunner, fake: FakeServer) -> None:
    """Before: it ended "continue with `agentrun chat clock --session chat-...`" for a session with no run."""
    result = runner.invoke(app, ["--execution-target", fake.target, "chat", "clock"], input="\n  \n", env=WIDE)
    assert result.exit_code == 0, result.output
    assert "continue with" not in result.stdout
    assert result.stdout.splitlines()[-1] == "nothing was asked: no run was made, so there is no session to continue"
    assert fake.calls.requests == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["runs", "stats", "--since", "0d"], "error: --since must be longer than 0 (e.g. 90m, 12h, 7d), got '0d'"),
        (["runs", "list", "--limit", "0"], "error: --limit must be at least 1 (runs per page; default 20), got 0"),
        (
            ["sessions", "list", "--limit", "0"],
            "error: --limit must be at least 1 (sessions per page; default 20), got 0",
        ),
    ],
)
def test_zero_since_or_limit_is_refused_before_calling_the_service(
    runner: CliRunner, fake: FakeServer, args: list[str], expected: str
) -> None:
    """Before: --since 0d got INVALID_ARGUMENT "end_time: must be after start_time" from the server; --limit 0 listed
    the server's default page size (50) although the help says 20."""
    result = invoke(runner, fake, *args)
    assert result.exit_code == 2
    assert result.stderr.strip() == expected
    assert fake.calls.requests == []
