"""Requests the service cannot serve get the status a client can act on, with a message that says what to do."""

from __future__ import annotations

import sys
from pathlib import Path

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex

from tests.support.stack import agent_source, running_stack


async def test_a_gemini_agent_without_an_api_key_is_failed_precondition_not_a_bad_request(tmp_path: Path) -> None:
    agents = {"gem": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}
    async with running_stack(tmp_path, agents, gemini_api_key="") as stack:
        stub = stack.execution_stub()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="gem", task="hello")):
                pass
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        details = caught.value.details() or ""
        assert "agent 'gem'" in details and "GEMINI_API_KEY is not set" in details, details

        # The same agent runs with the offline model when the request asks for it.
        events = [e async for e in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="gem", task="hi", model="test"))]
        assert events[-1].WhichOneof("event") == "run_finished"


async def test_a_label_key_no_filter_could_name_is_invalid_argument(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"echoer": agent_source(model="test", tools=["test/echo"])}) as stack:
        stub = stack.execution_stub()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            request = ex.ExecuteAgentRequest(agent_name="echoer", task="hi", labels={"has space": "x"})
            async for _ in stub.ExecuteAgent(request):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "labels: invalid label key 'has space'" in (caught.value.details() or "")


async def test_a_label_value_over_256_characters_is_invalid_argument_naming_the_key(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"echoer": agent_source(model="test", tools=["test/echo"])}) as stack:
        stub = stack.execution_stub()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            labels = {"env": "dev", "ticket": "x" * 100_000}
            async for _ in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echoer", task="hi", labels=labels)):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = caught.value.details() or ""
        assert "labels: the value of label 'ticket' is 100000 characters, over the cap of 256" in details, details
        assert len(details) < 300
        assert not stack.gemini.requests
        # 256 characters are fine, and RunsService stores them.
        events = [
            e
            async for e in stub.ExecuteAgent(
                ex.ExecuteAgentRequest(agent_name="echoer", task="hi", labels={"ticket": "y" * 256})
            )
        ]
        stored = await stack.stored_run(events[-1].run_finished.run_id)
        assert stored.labels["ticket"] == "y" * 256


async def test_an_agent_naming_a_tool_its_server_lacks_fails_tool_not_found_naming_what_exists(tmp_path: Path) -> None:
    async with running_stack(tmp_path, {"typo": agent_source(model="test", tools=["test/ecko"])}) as stack:
        events = await stack.execute(agent_name="typo", task="hi")
        finished = events[-1].run_finished
        assert finished.error.reason == "TOOL_NOT_FOUND"
        assert "MCP server 'test' has no tool 'ecko' (it has: " in finished.error.message
        assert "echo" in finished.error.message


async def test_list_agents_reports_an_agent_naming_an_undeclared_mcp_server(tmp_path: Path) -> None:
    agents = {"good": agent_source(model="test", tools=["test/echo"]), "lost": agent_source(tools=["nowhere/*"])}
    async with running_stack(tmp_path, agents) as stack:
        reply = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        assert [a.name for a in reply.agents] == ["good"]
        (error,) = reply.errors
        assert error.path.endswith("lost.prompt") and "'nowhere/*' names an MCP server" in error.message


async def test_a_run_error_quoting_a_secret_is_redacted_in_the_stream_and_the_store(tmp_path: Path) -> None:
    """An MCP server that dies at start-up printing its connection string: the run's error quotes its stderr (the
    most useful part), with the password redacted in RunFinished, the error step and the stored run alike."""
    script = tmp_path / "leaky.py"
    script.write_text(
        "import sys\n"
        "print('fatal: cannot connect to postgres://app:hunter2secret@db:5432/x (password=hunter2secret)',"
        " file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    servers = {"leaky": {"command": sys.executable, "args": [str(script)]}}
    agents = {
        "leaky": agent_source(model="test", tools=["leaky/*"]),
        "echoer": agent_source(model="test", tools=["test/echo"]),
    }
    async with running_stack(tmp_path, agents, mcp_servers=servers) as stack:
        listed = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        assert all(not agent.tool_problems for agent in listed.agents)  # not started yet: nothing known
        events = await stack.execute(agent_name="leaky", task="hi")
        finished = events[-1].run_finished
        assert finished.error.reason == "TOOL_SERVER_UNAVAILABLE"
        assert "fatal: cannot connect to postgres://app:" in finished.error.message
        stored = await stack.stored_run(finished.run_id)
        error_step = stored.execution_steps[-1].error
        for text in (finished.error.message, stored.error.message, error_step.message):
            assert "hunter2secret" not in text and "[REDACTED]" in text, text

        # ListAgents now says which agent would miss its tools, and why (the server is down, in its backoff).
        listed = await stack.execution_stub().ListAgents(ex.ListAgentsRequest())
        problems = {agent.name: list(agent.tool_problems) for agent in listed.agents}
        assert problems["echoer"] == []
        (problem,) = problems["leaky"]
        assert problem.startswith("MCP server 'leaky' is down: ") and "fatal: cannot connect" in problem
        assert "hunter2secret" not in problem and "[REDACTED]" in problem


async def test_cancelling_a_run_that_finished_long_ago_is_failed_precondition_for_its_user_only(
    tmp_path: Path,
) -> None:
    """Once the run has left this instance's memory (a restart, or 1,000 later runs), its stored record says it
    finished: FAILED_PRECONDITION for its user, and still NOT_FOUND for anyone else (nothing leaks)."""
    async with running_stack(tmp_path, {"echoer": agent_source(model="test", tools=["test/echo"])}) as stack:
        events = await stack.execute(agent_name="echoer", task="hi")
        run_id = events[-1].run_finished.run_id
        await stack.stored_run(run_id)
        stack.execution.manager._finished.clear()  # as after a restart
        stub = stack.execution_stub()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CancelRun(ex.CancelRunRequest(run_id=run_id))
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "already finished with status COMPLETED" in (caught.value.details() or "")
        unknown = "01a22b00-0000-7000-8000-000000000000"
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CancelRun(ex.CancelRunRequest(run_id=unknown))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("model", ["../x", "gemini-2.5-flash?alt=sse", "a&b", "gemini 2.5", "models/gemini-2.5-pro"])
async def test_a_model_override_that_is_no_model_name_is_invalid_argument(tmp_path: Path, model: str) -> None:
    """Found by an outside audit: google-genai refuses '..', '?' and '&' in a model name with a ValueError, which
    ended the run FAILED INTERNAL (an ERROR with a traceback) instead of refusing the request."""
    agents = {"gem": agent_source(model="gemini-2.5-flash", tools=["test/echo"])}
    async with running_stack(tmp_path, agents) as stack:
        stub = stack.execution_stub()
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in stub.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="gem", task="hello", model=model)):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"model: {model!r} is not a model name such as gemini-2.5-flash" in (caught.value.details() or "")
        assert not stack.gemini.requests
