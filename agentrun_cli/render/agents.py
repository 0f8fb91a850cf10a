"""`agentrun agents list`: the agents ExecutionService can run, and the files it could not load."""

from __future__ import annotations

from collections.abc import Sequence

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from agentrun_cli.render import format as fmt


def limits_text(limits: ex_pb2.AgentLimits, *, calls_agents: bool = False) -> str:
    """`calls_agents`: the agent has sub-agents, so how deep they may nest matters."""
    parts: list[str] = []
    if limits.max_steps:
        parts.append(f"{limits.max_steps} steps")
    if limits.HasField("run_timeout"):
        parts.append(f"run {fmt.duration(limits.run_timeout)}")
    if limits.HasField("tool_timeout"):
        parts.append(f"tool {fmt.duration(limits.tool_timeout)}")
    if limits.token_budget:
        parts.append(f"{fmt.count(limits.token_budget)} tokens")
    if calls_agents:
        parts.append(f"depth {limits.max_depth}")
    return ", ".join(parts) or fmt.NONE


def agents_table(agents: Sequence[ex_pb2.Agent]) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("name", style="cyan", no_wrap=True)
    table.add_column("model")
    table.add_column("tools")
    table.add_column("limits")
    table.add_column("version", no_wrap=True, style="dim")
    for agent in agents:
        table.add_row(
            agent.name,
            agent.model,
            ", ".join(agent.tools) or fmt.NONE,
            limits_text(agent.limits, calls_agents=bool(agent.sub_agents)),
            fmt.short_version(agent.version),
        )
    if not agents:
        table.caption = "no agents loaded"
    return table


def load_errors(errors: Sequence[ex_pb2.AgentLoadError]) -> Text | None:
    if not errors:
        return None
    text = Text(f"{len(errors)} agent file(s) could not be loaded:", style="bold red")
    for error in errors:
        text.append(f"\n  {error.path}: {error.message}", style="red")
    return text


def tool_problems(agents: Sequence[ex_pb2.Agent]) -> Text | None:
    """The agents whose tools come from MCP servers that are down now."""
    troubled = [agent for agent in agents if agent.tool_problems]
    if not troubled:
        return None
    text = Text(f"{len(troubled)} agent(s) would not get some of their tools now:", style="bold yellow")
    for agent in troubled:
        for problem in agent.tool_problems:
            text.append(f"\n  {agent.name}: {problem}", style="yellow")
    return text


def agents_view(response: ex_pb2.ListAgentsResponse) -> RenderableType:
    notes = [note for note in (tool_problems(response.agents), load_errors(response.errors)) if note is not None]
    return Group(agents_table(response.agents), *(part for note in notes for part in (Text(""), note)))
