"""Sub-agents as a tool kind: what the model is offered, how arguments become the child's task and variables, and how
a child's end becomes the tool result (the child runs themselves: tests/execution_service/e2e/test_sub_agents.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentrun_core.domain import RunError, RunStatus, ToolCallStatus
from execution_service.agents.loader import load_agent
from execution_service.agents.spec import AgentSpec
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolResolutionError
from execution_service.tools.run_tools import RunTools
from execution_service.tools.sub_agents import ChildResult, SubAgentTools

WRITER = """---
model: test
description: Writes one cheerful line.
input:
  schema:
    tone: string, How it sounds
    words?: integer
---
{{task}}
"""


class Children:
    """A ChildRunner that records what it was asked and answers with `result`."""

    def __init__(self, result: ChildResult | str) -> None:
        self.result = result
        self.asked: list[tuple[str, str, dict[str, str], ToolCallContext]] = []
        self.not_started_calls: list[tuple[str, ToolCallContext, str]] = []

    async def run_child(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext
    ) -> ChildResult | str:
        self.asked.append((agent, task, variables, context))
        return self.result

    async def not_started(
        self, agent: str, task: str, variables: dict[str, str], context: ToolCallContext, problem: str
    ) -> None:
        self.not_started_calls.append((agent, context, problem))


class McpTools:
    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        return [ResolvedTool("docs", "writer", "writer", "an MCP tool of the same name", {})]

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        return ToolOutcome(text="mcp")


@pytest.fixture
def writer(tmp_path: Path) -> AgentSpec:
    path = tmp_path / "writer.prompt"
    path.write_text(WRITER)
    return load_agent(path)


def tools(writer: AgentSpec, children: Children) -> SubAgentTools:
    return SubAgentTools({"writer": writer}.get, children)


def test_the_model_sees_the_task_and_the_agents_variables(writer: AgentSpec) -> None:
    [tool] = tools(writer, Children("unused")).resolve(["writer"])
    assert (tool.server, tool.name, tool.exposed_name, tool.starts_run) == ("agents", "writer", "writer", True)
    assert "Writes one cheerful line." in tool.description
    assert tool.input_schema["required"] == ["task", "tone"]
    assert set(tool.input_schema["properties"]) == {"task", "tone", "words"}
    assert tool.input_schema["properties"]["words"]["type"] == ["integer", "null"]  # optional
    with pytest.raises(ToolResolutionError, match="agents/gone"):
        tools(writer, Children("unused")).resolve(["writer", "gone"])


async def test_names_are_unique_across_mcp_tools_and_sub_agents(writer: AgentSpec) -> None:
    run_tools = RunTools(McpTools(), tools(writer, Children("unused")))
    resolved = await run_tools.resolve(["docs/writer", "agents/writer"])
    assert [(t.server, t.exposed_name) for t in resolved] == [("docs", "docs_writer"), ("agents", "agents_writer")]


async def test_arguments_become_the_task_and_text_variables(writer: AgentSpec) -> None:
    children = Children(ChildResult("child-1", RunStatus.COMPLETED, final_response="Sunny!"))
    [tool] = tools(writer, children).resolve(["writer"])
    context = ToolCallContext("c1", child_run_id="child-1")
    outcome = await tools(writer, children).call(tool, {"task": "a line", "tone": "warm", "words": 5}, context)
    assert outcome == ToolOutcome(text="Sunny!")
    assert children.asked[-1] == ("writer", "a line", {"tone": "warm", "words": "5"}, context)
    await tools(writer, children).call(tool, {"task": "a line", "tone": "warm", "words": None}, context)
    assert children.asked[-1][2] == {"tone": "warm"}  # null: the optional variable is not given

    missing = await tools(writer, children).call(tool, {"tone": "warm"}, context)
    assert missing.is_error and "'task' must be a non-empty string" in missing.text
    assert len(children.asked) == 2  # no child for a call without a task
    # Its reserved run id is stored as a run that did not start, saying why.
    assert children.not_started_calls == [
        ("writer", context, "'task' must be a non-empty string (the task for the sub-agent)")
    ]


@pytest.mark.parametrize(
    ("status", "tool_status"),
    [
        (RunStatus.FAILED, ToolCallStatus.FAILED),
        (RunStatus.TIMED_OUT, ToolCallStatus.TIMED_OUT),
        (RunStatus.CANCELLED, ToolCallStatus.CANCELLED),
        (RunStatus.INTERRUPTED, ToolCallStatus.FAILED),
    ],
)
async def test_a_child_that_did_not_complete_is_a_tool_error(
    writer: AgentSpec, status: RunStatus, tool_status: ToolCallStatus
) -> None:
    ended = ChildResult("child-1", status, error=RunError("SOME_REASON", "what happened"))
    [tool] = tools(writer, Children(ended)).resolve(["writer"])
    outcome = await tools(writer, Children(ended)).call(
        tool, {"task": "x", "tone": "y"}, ToolCallContext("c", "child-1")
    )
    assert outcome.is_error and outcome.status is tool_status
    assert outcome.text == f"sub-agent 'writer' (run child-1) ended {status.value} (SOME_REASON: what happened)"

    refused = await tools(writer, Children("too deep")).call(tool, {"task": "x"}, ToolCallContext("c", "child-2"))
    assert refused.is_error and refused.text == "sub-agent 'writer' did not start: too deep"
