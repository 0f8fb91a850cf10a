"""The tools of one run: its MCP tools (the shared pool) and its sub-agents, behind the one ToolProvider interface.

`resolve` takes an agent's declared tools (`server/tool`, `server/*`, `agents/NAME`) and names them all together,
so the model sees unique names across both kinds; `call` sends each call to the kind it belongs to.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from execution_service.agents.loader import SUB_AGENT_PREFIX
from execution_service.tools.base import ResolvedTool, ToolCallContext, ToolOutcome, ToolProvider
from execution_service.tools.naming import exposed_names
from execution_service.tools.sub_agents import SubAgentTools


class RunTools:
    """Implements execution_service.tools.base.ToolProvider for one run."""

    def __init__(self, mcp: ToolProvider, sub_agents: SubAgentTools) -> None:
        self._mcp = mcp
        self._sub_agents = sub_agents

    async def resolve(self, patterns: list[str]) -> list[ResolvedTool]:
        """Raises ToolResolutionError (from the MCP pool first, then for sub-agents that are not loaded)."""
        mcp_patterns = [p for p in patterns if not p.startswith(SUB_AGENT_PREFIX)]
        agents = [p.removeprefix(SUB_AGENT_PREFIX) for p in patterns if p.startswith(SUB_AGENT_PREFIX)]
        tools = await self._mcp.resolve(mcp_patterns) if mcp_patterns else []
        if not agents:
            return tools
        tools += self._sub_agents.resolve(agents)
        names = exposed_names([(tool.server, tool.name) for tool in tools])
        return [dataclasses.replace(tool, exposed_name=name) for tool, name in zip(tools, names, strict=True)]

    async def call(
        self, tool: ResolvedTool, arguments: dict[str, Any], timeout_s: float, context: ToolCallContext | None = None
    ) -> ToolOutcome:
        """A sub-agent's call is bounded by the child's own limits (run_timeout), not by `timeout_s`."""
        if tool.starts_run:
            if context is None or not context.child_run_id:
                raise ValueError(f"a call of sub-agent {tool.name!r} needs its call id and child run id")
            return await self._sub_agents.call(tool, arguments, context)
        return await self._mcp.call(tool, arguments, timeout_s, context)
