"""`agentrun chat` and `agentrun runs fork` as a user runs them: the CLI in its own process, against a real
ExecutionService and RunsService, the fake Gemini and real MCP servers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse
from tests.support.stack import REPO, Stack, agent_source, running_stack


async def agentrun(stack: Stack, *args: str, stdin: str = "") -> tuple[int, str, str]:
    """Runs `agentrun ARGS` with `stdin` as its input; (exit code, stdout, stderr)."""
    env = {
        **os.environ,
        "AGENTRUN_EXECUTION_TARGET": stack.execution_address,
        "AGENTRUN_RUNS_TARGET": stack.runs_address,
        "AGENTRUN_TOKEN": "",
        "COLUMNS": "200",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentrun_cli",
        *args,
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_chat_is_one_session_whose_runs_see_the_conversation_and_ends_on_eof(tmp_path: Path) -> None:
    agents = {"chat": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(FakeResponse(text="Hello Ada."), FakeResponse(text="Your name is Ada."))
        code, out, err = await agentrun(
            stack, "chat", "chat", "--session", "cli-chat", stdin="I am Ada.\n\nWho am I?\n"
        )
        assert code == 0, (out, err)
        assert "Traceback" not in err
        lines = out.splitlines()
        assert lines[0] == "session cli-chat · chat · Ctrl-D to end"
        assert "chat> Hello Ada." in out and "chat> Your name is Ada." in out
        # Each line was streamed as a run: its start line and its model turn.
        assert out.count("▶ run ") == out.count(" · session cli-chat · trace ") == 2
        assert lines[-1] == "session cli-chat · continue with `agentrun chat chat --session cli-chat`"
        # The blank line started no run; the second run's request held the first exchange.
        assert len(stack.gemini.requests) == 2
        second = stack.gemini.requests[1]
        assert second.roles == ["user", "model", "user"]
        assert [p["text"] for c in second.contents for p in c["parts"]] == ["I am Ada.", "Hello Ada.", "Who am I?"]
        await stack.execution.flush_outbox(10)
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(filter='session_id = "cli-chat"'))
        assert sorted(r.final_response for r in listed.runs) == ["Hello Ada.", "Your name is Ada."]


async def test_chat_without_a_session_starts_a_new_one_and_prints_it(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"chat": agent_source(model="gemini-2.5-flash")}) as stack:
        stack.gemini.add(FakeResponse(text="Hi."))
        code, out, err = await agentrun(stack, "chat", "chat", stdin="Hello\n")
        assert code == 0, (out, err)
        session_id = out.splitlines()[0].split(" ")[1]
        assert session_id.startswith("chat-")
        await stack.execution.flush_outbox(10)
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(filter=f'session_id = "{session_id}"'))
        assert [r.final_response for r in listed.runs] == ["Hi."]


async def test_runs_fork_streams_the_fork_with_a_tool_result_from_a_file(tmp_path: Path) -> None:
    agents = {"worker": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(
            FakeResponse(function_calls=[FakeFunctionCall("echo", {"text": "original"}, id="c1")]),
            FakeResponse(text="The tool said original."),
        )
        events = await stack.execute(agent_name="worker", task="echo something")
        original_id = events[0].run_started.run_id
        await stack.stored_run(original_id)
        edited = tmp_path / "edited.txt"
        edited.write_text("edited by hand")
        stack.gemini.add(FakeResponse(text="The tool said edited by hand."))

        code, out, err = await agentrun(
            stack, "runs", "fork", original_id, "--from", "3", "--model", "gemini-2.5-pro",
            "--set-tool-result", f"c1={edited}",
        )  # fmt: skip
        assert code == 0, (out, err)
        assert "Traceback" not in err
        # The start line names the live model and the fork's origin.
        assert f"gemini-2.5-pro · fork of {original_id} after step 3" in out.splitlines()[0]
        assert "edited by hand" in out
        assert "final response: The tool said edited by hand." in out
        # One model request for the fork (the last call), carrying the edited result.
        assert len(stack.gemini.requests) == 3
        assert stack.gemini.requests[2].function_response("c1")["response"] == {"result": "edited by hand"}
        await stack.execution.flush_outbox(10)
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(view=rs.RUN_VIEW_BASIC))
        forks = [r for r in listed.runs if r.HasField("forked_from")]
        assert [(r.forked_from.run_id, r.forked_from.sequence, r.status) for r in forks] == [
            (original_id, 3, run_pb2.RUN_STATUS_COMPLETED)
        ]


async def test_runs_fork_with_a_step_out_of_range_exits_with_the_services_message(tmp_path: Path) -> None:
    agents = {"worker": agent_source(model="gemini-2.5-flash")}
    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.add(FakeResponse(text="one"))
        events = await stack.execute(agent_name="worker", task="hello")
        await stack.stored_run(events[0].run_started.run_id)
        code, out, err = await agentrun(stack, "runs", "fork", events[0].run_started.run_id, "--from", "1")
        assert code != 0
        assert "no step before its last model call" in err, (out, err)
        code, out, err = await agentrun(
            stack, "runs", "fork", events[0].run_started.run_id, "--from", "1", "--set-tool-result", "c1=/nonexistent"
        )
        assert code == 2 and "cannot read '/nonexistent'" in err, (out, err)


async def test_chat_with_an_unknown_agent_ends_with_the_services_message(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"chat": agent_source(model="gemini-2.5-flash")}) as stack:
        code, out, err = await agentrun(stack, "chat", "nosuch", stdin="Hello\nAgain\n")
        assert code == 2, (out, err)  # NOT_FOUND is a usage error, as for `agentrun run`
        assert "NOT_FOUND" in err and "agent 'nosuch' not found; available agents: chat" in err, err
        assert "Traceback" not in err
        assert stack.gemini.requests == []


async def test_ctrl_c_in_chat_cancels_that_run_only_and_the_conversation_goes_on(tmp_path: Path) -> None:
    """The first line's model call hangs; SIGINT (Ctrl-C) cancels that run on the server, the prompt comes back, the
    next line is a run of the same session that completes, and end of input ends the chat normally."""
    agents = {"chat": agent_source(model="gemini-2.5-flash")}
    released = threading.Event()

    async def respond(body: dict[str, object]) -> FakeResponse:
        contents = str(body.get("contents", ""))
        if "hang" in contents and "thanks" not in contents:  # the second run's request holds the first's task
            await asyncio.to_thread(released.wait, 60)
        return FakeResponse(text="Answered.")

    async with running_stack(tmp_path, agents) as stack:
        stack.gemini.set_responder(respond)
        env = {**os.environ, "AGENTRUN_EXECUTION_TARGET": stack.execution_address, "AGENTRUN_TOKEN": ""}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agentrun_cli",
            "chat",
            "chat",
            "--session",
            "ctrl-c",
            cwd=REPO,
            env={**env, "COLUMNS": "200"},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(b"please hang\n")
            await proc.stdin.drain()
            shown: list[bytes] = []
            while not any("▶ run ".encode() in line for line in shown):
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)  # until the CLI shows the run
                assert line, "the chat ended before its first run started"
                shown.append(line)
            for _ in range(200):  # and the hanging model call reached the fake Gemini
                if stack.gemini.requests:
                    break
                await asyncio.sleep(0.05)
            assert stack.gemini.requests, "the first line's run never called the model"
            proc.send_signal(signal.SIGINT)
            proc.stdin.write(b"thanks anyway\n")
            await proc.stdin.drain()
            proc.stdin.close()
            rest, err_bytes = await asyncio.wait_for(proc.communicate(), timeout=60)
            out_bytes = b"".join(shown) + rest
        finally:
            released.set()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        out, err = out_bytes.decode(), err_bytes.decode()
        assert proc.returncode == 0, (out, err)
        assert "Traceback" not in err
        assert "status: CANCELLED" in out, out
        assert "chat> Answered." in out and out.count("chat> Answered.") == 1, out
        assert out.splitlines()[-1] == "session ctrl-c · continue with `agentrun chat chat --session ctrl-c`"
        await stack.execution.flush_outbox(10)
        listed = await stack.runs_stub().ListRuns(rs.ListRunsRequest(filter='session_id = "ctrl-c"'))
        statuses = sorted((r.task, r.status) for r in listed.runs)
        assert statuses == [
            ("please hang", run_pb2.RUN_STATUS_CANCELLED),
            ("thanks anyway", run_pb2.RUN_STATUS_COMPLETED),
        ]
