"""Rendering is pure: protobuf messages in, rich renderables (or plain lines) out."""

from __future__ import annotations

import json

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from google.protobuf.duration_pb2 import Duration
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from agentrun_cli import output
from agentrun_cli.progress import RunProgress
from agentrun_cli.render import format as fmt
from agentrun_cli.render.agents import agents_view
from agentrun_cli.render.live import live_area, live_step_line
from agentrun_cli.render.run_details import run_details
from agentrun_cli.render.run_list import runs_table
from agentrun_cli.render.stats import run_stats_table, tool_stats_table
from agentrun_cli.render.steps import plain_line
from agentrun_cli.render.summary import summary_lines, usage_line
from tests.cli import samples
from tests.cli.cli_helpers import invoke
from tests.cli.fake_services import FakeServer


def text_of(renderable: RenderableType, width: int = 200) -> str:
    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    console.print(renderable)
    return console.export_text()


def test_show_view_has_header_tokens_cost_steps_and_tool_calls() -> None:
    out = text_of(run_details(samples.clock_run()))
    assert samples.RUN_ID in out
    assert "clock@sha256:0123456789abcdef0123456789abcdef" in out
    assert samples.TRACE_ID in out
    assert "alice" in out and "COMPLETED" in out
    assert "env=dev, team=docs" in out
    # token usage: input, output, cached, thinking, tool-use prompt, total
    for number in ("2,500", "55", "200", "15", "40", "2,570"):
        assert number in out
    assert "0.001496 USD" in out and "genai-prices 0.2.3" in out
    assert "It is 14:00 (CET) on Wednesday in Paris." in out
    kinds = ["model_call", "tool_call", "tool_result", "model_call", "final_response"]
    positions = [out.index(kind, out.index("steps")) for kind in kinds[:3]]
    assert positions == sorted(positions)
    step_lines = [line for line in out.splitlines() if any(f" {k} " in f" {line} " for k in kinds)]
    assert [next(k for k in kinds if k in line) for line in step_lines] == kinds
    assert '{"timezone":"Europe/Paris"}' in out  # tool arguments, compacted
    assert "+0.900s" in out  # time offset from the run's start
    assert "TTFT 210 ms" in out and "STOP" in out
    assert "tool calls" in out and "SUCCEEDED" in out and "12 ms" in out


def test_show_view_of_a_failed_run_shows_the_error() -> None:
    out = text_of(run_details(samples.failed_run()))
    assert "FAILED" in out
    assert "MAX_STEPS_EXCEEDED: the run took more than 6 steps" in out
    assert "cost unknown" in out
    assert "no steps recorded" in out


def test_plain_lines_one_per_step() -> None:
    lines = [plain_line(step) for step in samples.clock_steps()]
    assert lines[0].startswith("[1] model_call gemini-2.5-flash · 1,245 tokens (1,200 in / 30 out / 200 cached")
    assert lines[1] == '[2] tool_call time/get_current_time {"timezone":"Europe/Paris"}'
    assert lines[2].startswith("[3] tool_result get_current_time ✓ 12 ms ")
    assert lines[4] == "[5] final_response It is 14:00 (CET) on Wednesday in Paris."
    assert all("\n" not in line for line in lines)


def test_failed_tool_result_is_marked() -> None:
    step = run_pb2.ExecutionStep(
        sequence=7,
        tool_result=run_pb2.ToolCallFinished(
            tool_name="read_file",
            is_error=True,
            status=run_pb2.TOOL_CALL_STATUS_TIMED_OUT,
            duration=samples.dur(20),
            result_text="timed out",
        ),
    )
    assert plain_line(step) == "[7] tool_result read_file ✗ 20 s TIMED_OUT timed out"


def test_live_view_spinner_for_call_in_flight_then_check_mark() -> None:
    progress = RunProgress()
    progress.apply(ex_pb2.ExecuteAgentResponse(run_started=samples.run_started()))
    steps = samples.clock_steps()
    for step in steps[:2]:
        progress.apply_step(step)
    area = text_of(live_area(progress))
    assert 'time/get_current_time {"timezone":"Europe/Paris"}' in area
    assert "1,245 tokens" in area  # running count in the footer
    progress.apply_step(steps[2])
    line = live_step_line(steps[2], progress)
    assert line is not None
    assert line.plain.startswith('✓ time/get_current_time {"timezone":"Europe/Paris"} 12 ms')
    assert "get_current_time" not in text_of(live_area(progress))


def test_summary_lines() -> None:
    lines = summary_lines(samples.run_finished())
    assert "status: COMPLETED" in lines
    assert "tokens: input 2,500 · output 55 · cached 200 · thinking 15 · total 2,570" in lines
    assert f"run id: {samples.RUN_ID}" in lines
    assert "tool calls: 1" in lines and "duration: 1.50 s" in lines
    assert any(line.startswith("stored: not yet: RunsService did not acknowledge it") for line in lines)
    assert not any("sub-agents" in line for line in lines)
    parent = samples.run_finished()
    parent.token_usage_with_descendants.CopyFrom(
        run_pb2.TokenUsage(input_tokens=3000, output_tokens=70, total_tokens=3070)
    )
    parent.cost_with_descendants.CopyFrom(run_pb2.Cost(amount="0.002", currency_code="USD"))
    with_children = summary_lines(parent)
    assert "tokens with sub-agents: input 3,000 · output 70 · cached 0 · thinking 0 · total 3,070" in with_children
    assert any(line.startswith("cost with sub-agents: 0.002") for line in with_children)
    recorded = samples.run_finished()
    recorded.recorded = True
    assert "stored: yes (RunsService has the complete run)" in summary_lines(recorded)


RUNS_COLUMNS = ["id", "agent", "status", "model", "start", "duration", "tokens", "cost", "tools"]


def test_runs_table() -> None:
    out = text_of(runs_table([samples.clock_run(), samples.failed_run()]))
    assert out.splitlines()[0].split() == RUNS_COLUMNS
    assert samples.RUN_ID in out and "clock" in out and "repo-reviewer" in out
    assert "COMPLETED" in out and "FAILED" in out
    assert "2026-11-25 13:00:00Z" in out and "1.50 s" in out and "0.001496 USD" in out
    assert "2,570" in out and "get_current_time" in out
    assert "shortened" not in out


def test_runs_table_at_80_columns_keeps_every_column_and_truncates_with_an_ellipsis() -> None:
    """Rich used to drop agent, model, tokens, cost and tools at 80 columns (also the width of piped output)."""
    long_one = samples.clock_run("0193a5c4-0000-7000-8000-00000000abcd")
    long_one.agent_name = "a-very-long-agent-name-that-cannot-fit"
    long_one.tools_used.extend(["convert_time", "list_directory", "read_file"])
    runs = [samples.clock_run(), samples.failed_run(), long_one]
    out = text_of(runs_table(runs), width=80)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines), out
    assert lines[0].split() == RUNS_COLUMNS
    clock, failed, long_row = lines[1:4]
    # id (shortened to its random end), agent, status, start, duration and tokens are all there, uncut.
    assert clock.split()[:2] == ["…4a5b6c7d", "clock"] and "COMPLETED" in clock
    assert "11-25 13:00Z" in clock and "1.50 s" in clock and "2,570" in clock
    assert failed.split()[0] == "…00000002" and failed.split()[1].startswith("repo")
    assert "FAILED" in failed and "30 s" in failed and "9,800" in failed
    assert "0.001496 USD" in clock  # the cost is never cut
    # What does not fit is cut with an ellipsis, not dropped.
    assert "…" in long_row.split()[1] and long_row.split()[1].startswith("a-ve")
    assert long_row.rstrip().endswith("…")
    assert "ids shortened: runs show/watch/cancel take them as is; --json shows them in full" in out


def test_runs_table_fits_every_width_from_80_up() -> None:
    runs = [samples.clock_run(), samples.failed_run()]
    for width in range(80, 180, 7):
        lines = text_of(runs_table(runs), width=width).splitlines()
        assert lines[0].split() == RUNS_COLUMNS, width
        assert all(len(line) <= width for line in lines), width


def test_stats_tables() -> None:
    group = runs_pb2.RunStatsGroup(
        key="clock",
        run_count=40,
        success_rate=0.95,
        token_usage=samples.usage(1000, 200),
        duration_p50=samples.dur(1.2),
        duration_p95=samples.dur(75),
        max_context_window_used=0.875,
    )
    out = text_of(run_stats_table("by agent", [group]))
    assert "clock" in out and "95.0%" in out and "1,200" in out and "1.20 s" in out and "1m 15s" in out
    assert "max context" in out and "87.5%" in out
    tools = text_of(tool_stats_table([runs_pb2.ToolStats(tool_name="read_file", call_count=3, error_rate=1 / 3)]))
    assert "read_file" in tools and "33.3%" in tools


def test_agents_view_shows_load_errors() -> None:
    response = ex_pb2.ListAgentsResponse(
        agents=[ex_pb2.Agent(name="clock", version="abcdef0123456789", model="m", tools=["time/*"])],
        errors=[ex_pb2.AgentLoadError(path="agents/bad.prompt", message="no model")],
    )
    out = text_of(agents_view(response))
    assert "clock" in out and "abcdef012345" in out and "abcdef0123456789" not in out
    assert "agents/bad.prompt: no model" in out
    assert "depth" not in out  # an agent without sub-agents: how deep they may nest does not matter


def test_agents_view_shows_which_agents_would_miss_tools() -> None:
    down = "MCP server 'git' is down: the process exited (status 1)"
    response = ex_pb2.ListAgentsResponse(
        agents=[
            ex_pb2.Agent(name="reviewer", tools=["git/*"], tool_problems=[down]),
            ex_pb2.Agent(name="clock", tools=["time/*"]),
        ],
        errors=[ex_pb2.AgentLoadError(path="agents/bad.prompt", message="no model")],
    )
    out = text_of(agents_view(response))
    assert "1 agent(s) would not get some of their tools now:" in out
    assert f"reviewer: {down}" in out and "clock: " not in out
    assert out.index("would not get") < out.index("agents/bad.prompt: no model")


def test_agents_view_shows_sub_agents_and_their_depth_limit() -> None:
    planner = ex_pb2.Agent(
        name="planner",
        tools=["agents/clock"],
        sub_agents=["clock"],
        limits=ex_pb2.AgentLimits(max_steps=8, max_depth=1),
    )
    out = text_of(agents_view(ex_pb2.ListAgentsResponse(agents=[planner])))
    assert "agents/clock" in out and "8 steps, depth 1" in out


def test_formatters() -> None:
    assert fmt.human_seconds(0.0123) == "12 ms"
    assert fmt.human_seconds(3.456) == "3.46 s"
    assert fmt.human_seconds(123) == "2m 03s"
    assert fmt.human_seconds(3723) == "1h 02m"
    assert fmt.truncate("a\nb  c", 10) == "a b c"
    assert fmt.truncate("abcdefghij", 5) == "abcd…"
    assert fmt.tool_label("get_current_time", "time") == "time/get_current_time"
    assert fmt.tool_label("time/get_current_time", "time") == "time/get_current_time"
    assert fmt.status_name(run_pb2.RUN_STATUS_TIMED_OUT) == "TIMED_OUT"


def test_a_model_call_line_shows_retries_context_and_thoughts() -> None:
    attempts = [
        run_pb2.ModelAttempt(attempt=n, code=429, reason="MODEL_RATE_LIMITED", wait_before_next=Duration(seconds=7))
        for n in (1, 2, 3)
    ]
    call = run_pb2.ModelCall(
        model="gemini-2.5-flash",
        failed_attempts=attempts,
        input_token_limit=1_048_576,
        context_window_used=0.42,
        thoughts="The user wants...",
    )
    line = plain_line(run_pb2.ExecutionStep(sequence=1, model_call=call))
    assert "context 42% of 1,048,576" in line
    assert "3 failed attempts (429 x3), waited 21 s" in line
    assert "thoughts" in line


def test_live_view_indents_a_sub_agents_steps_by_depth() -> None:
    child = "0190b6e2-7c3a-7d4e-9f10-000000000002"
    progress = RunProgress()
    progress.apply(ex_pb2.ExecuteAgentResponse(run_started=samples.run_started()))
    own_call = run_pb2.ExecutionStep(
        run_id=samples.RUN_ID,
        sequence=2,
        tool_call=run_pb2.ToolCallStarted(
            call_id="c1", tool_name="researcher", server="agents", arguments_json='{"task":"dig"}', child_run_id=child
        ),
    )
    # The child's own call has the same call id as the parent's: they are told apart by run id.
    child_call = run_pb2.ExecutionStep(
        run_id=child,
        sequence=2,
        depth=1,
        tool_call=run_pb2.ToolCallStarted(call_id="c1", tool_name="echo", server="test", arguments_json='{"text":"x"}'),
    )
    child_result = run_pb2.ExecutionStep(
        run_id=child,
        sequence=3,
        depth=1,
        tool_result=run_pb2.ToolCallFinished(call_id="c1", tool_name="echo", duration=samples.dur(0.012)),
    )
    for step in (own_call, child_call):
        progress.apply_step(step)
    area = text_of(live_area(progress)).splitlines()
    [parent_line] = [line for line in area if "agents/researcher" in line]
    [child_line] = [line for line in area if "test/echo" in line]
    indent = child_line.index("test/echo") - parent_line.index("agents/researcher")
    assert indent == 2
    progress.apply_step(child_result)
    line = live_step_line(child_result, progress)
    assert line is not None and line.plain.startswith('  ✓ test/echo {"text":"x"}')
    assert "agents/researcher" in text_of(live_area(progress)) and "test/echo" not in text_of(live_area(progress))
    assert progress.last_sequence == 2  # the run's own last step
    assert progress.last_step == (child, 3)  # a reattach goes on after the last step received, a sub-agent's
    answer = run_pb2.ExecutionStep(run_id=child, sequence=4, depth=2, final_response=run_pb2.FinalResponse(text="x"))
    answered = live_step_line(answer, progress)
    assert answered is not None and answered.plain.startswith("    ■ sub-agent answered")
    assert plain_line(answer) == f"    [4] final_response x (run {child})"


def test_a_resumed_step_is_one_line_with_the_gap_and_the_replicas() -> None:
    step = run_pb2.ExecutionStep(
        sequence=6,
        resumed=run_pb2.RunResumed(
            gap=Duration(seconds=31, nanos=250_000_000), replica="replica-b", previous_replica="replica-a"
        ),
    )
    assert plain_line(step) == "[6] resumed resumed on replica-b after 31.2 s (was replica-a)"


def test_control_characters_from_a_run_are_shown_not_obeyed(capsys: pytest.CaptureFixture[str]) -> None:
    """A model's answer or a tool's result holding terminal escapes must not clear or recolour the reader's
    terminal: both the rich views and the plain lines show them as visible characters."""
    hostile = "It is 14:00\x1b[2J\x1b[31m in Paris\r\x07\x9b"
    run = samples.clock_run()
    run.final_response = hostile
    output.console().print(run_details(run))
    step = samples.clock_run().execution_steps[-1]
    step.final_response.text = hostile
    output.print_line(plain_line(step))
    out = capsys.readouterr().out
    for raw in ("\x1b", "\r", "\x07", "\x9b"):
        assert raw not in out
    assert out.count("It is 14:00␛[2J␛[31m in Paris") == 2  # a plain line folds the \r into a space

    # Output for programs (--json) stays lossless: the JSON line reads back to the very text.
    output.print_data_line(output.json_line(step))
    assert json.loads(capsys.readouterr().out)["finalResponse"]["text"] == hostile


def test_tool_use_prompt_tokens_are_shown_when_there_are_any() -> None:
    usage = run_pb2.TokenUsage(input_tokens=1000, output_tokens=40, tool_use_prompt_tokens=30, total_tokens=1070)
    assert fmt.tokens_brief(usage) == "1,070 tokens (1,000 in / 40 out / 30 tool-use prompt)"
    assert "thinking 0 · tool-use prompt 30 · total 1,070" in usage_line(usage)
    assert "tool-use" not in usage_line(run_pb2.TokenUsage(input_tokens=1))


def test_runs_table_cuts_a_long_agent_name_never_the_cost() -> None:
    """A 200-character agent name used to take every spare column while cost stayed 4 wide ("1 E…", "0.2…")."""
    long_one = samples.clock_run("0193a5c4-0000-7000-8000-00000000abcd")
    long_one.agent_name = "agent-" + "x" * 194
    long_one.cost.CopyFrom(run_pb2.Cost(amount="1", currency_code="EUR"))
    quarter = samples.failed_run()
    quarter.cost.CopyFrom(run_pb2.Cost(amount="0.25", currency_code="USD"))
    for width in (80, 120, 200):
        out = text_of(runs_table([long_one, quarter]), width=width)
        lines = out.splitlines()
        assert all(len(line) <= width for line in lines), out
        assert "1 EUR" in lines[1] and "0.25 USD" in lines[2] and "COMPLETED" in lines[1], out
        agent = lines[1].split()[1]
        assert agent.startswith("agent-") and agent.endswith("…"), out
    assert "gemini-2.5-flash" in lines[1] and "get_current_time" in lines[1], out  # at 200: only the agent is cut


def test_session_runs_keep_status_and_cost_whole_at_80_columns() -> None:
    """`sessions show` at 80 columns used to print "COMPLE…" and "1.5 U…" while the id column kept 35 characters."""
    from agentrun_cli.render.sessions import session_details

    session = runs_pb2.Session(id="chat-1", user="alice", run_count=2, top_level_run_count=1, start_time=samples.ts())
    root = samples.clock_run()
    root.agent_name = "a-planner-agent-with-a-rather-long-name"
    root.task = "Plan the migration of every service to the new cluster and say what could go wrong"
    root.cost.CopyFrom(run_pb2.Cost(amount="1.5", currency_code="USD"))
    child = samples.failed_run()
    child.depth = 1
    child.cost.CopyFrom(run_pb2.Cost(amount="0.25", currency_code="EUR"))
    out = text_of(session_details(session, [root, child]), width=80)
    assert all(len(line) <= 80 for line in out.splitlines()), out
    root_line = next(line for line in out.splitlines() if "…4a5b6c7d" in line)
    child_line = next(line for line in out.splitlines() if "…00000002" in line)
    assert "COMPLETED" in root_line and "1.5 USD" in root_line and "a-planner" in root_line, out
    assert "FAILED" in child_line and "0.25 EUR" in child_line and "└ repo-re" in child_line, out
    assert "ids shortened: runs show takes them as is; --json shows them in full" in out
    assert samples.RUN_ID in text_of(session_details(session, [root, child]), width=250)


def test_a_tree_cut_by_size_says_more_runs_are_under_it_without_counting_them() -> None:
    """GetRun returned 4 of 5 large descendants (descendants_truncated): the title used to say "4 under this one"."""
    from agentrun_cli.render.tree import run_tree

    root = samples.clock_run()
    children = []
    for index in range(4):
        child = samples.failed_run(f"0193a5c4-0000-7000-8000-00000000001{index}")
        child.parent_run_id, child.root_run_id, child.depth = root.id, root.id, 1
        children.append(child)
    out = text_of(run_tree(root, children, truncated=True))
    assert "runs (4 shown; more are under this one)" in out and "4 under this one" not in out
    assert "at most 500, fewer when they are large" in out
    assert f"`agentrun runs list --root {root.id}` lists the whole tree" in out
    assert "runs (4 under this one)" in text_of(run_tree(root, children))


def test_bidirectional_text_controls_are_shown_not_obeyed_by_runs_show_and_run_lines(
    runner: CliRunner, fake: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: U+202E and friends were printed raw, so "over\\u202egnp.exe\\u202c" read as "overexe.png"."""
    hostile = "see over\u202egnp.exe\u202c and \u2066x\u2069\u200e\u200f\u061c"
    stored = samples.clock_run()
    stored.final_response = hostile
    fake.runs.runs[samples.RUN_ID] = stored
    shown = invoke(runner, fake, "runs", "show", samples.RUN_ID)
    assert shown.exit_code == 0, shown.stderr
    expected = "see over⟨U+202E⟩gnp.exe⟨U+202C⟩ and ⟨U+2066⟩x⟨U+2069⟩⟨U+200E⟩⟨U+200F⟩⟨U+061C⟩"
    assert expected in shown.stdout
    for raw in "\u202e\u202c\u2066\u2069\u200e\u200f\u061c":
        assert raw not in shown.stdout
    as_json = invoke(runner, fake, "runs", "show", samples.RUN_ID, "--json")
    assert json.loads(as_json.stdout)["finalResponse"] == hostile
    step = samples.clock_run().execution_steps[-1]
    step.final_response.text = hostile
    capsys.readouterr()
    output.print_line(plain_line(step))  # what `agentrun run` prints for each step when stdout is not a terminal
    assert expected in capsys.readouterr().out
