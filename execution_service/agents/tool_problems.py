"""Why an agent would not get some of its tools now: the MCP servers its tool patterns name that are down."""

from __future__ import annotations

from collections.abc import Mapping

from execution_service.agents.spec import AgentSpec


def tool_problems(agent: AgentSpec, servers_down: Mapping[str, str]) -> list[str]:
    """One line per server the agent's tools come from that is down (`servers_down`: server -> its last error)."""
    servers = sorted({pattern.partition("/")[0] for pattern in agent.tools})
    return [f"MCP server {name!r} is down: {servers_down[name]}" for name in servers if name in servers_down]
