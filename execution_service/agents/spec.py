"""An agent as loaded from its .prompt file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from execution_service.schedules.spec import ScheduleSpec


@dataclass(frozen=True, slots=True)
class AgentLimits:
    max_steps: int = 25
    run_timeout_s: float = 600.0
    tool_timeout_s: float = 60.0
    # 0 means no budget. Counted on total tokens summed over the run's model calls.
    token_budget: int = 0
    # How much of one tool result the model receives (UTF-8 bytes); the rest is cut, with a marker saying so.
    tool_result_bytes: int = 128 * 1024
    # How many levels of sub-agent runs a run of this agent may have under it (1: its sub-agents, which call none).
    max_depth: int = 3


@dataclass(frozen=True, slots=True)
class SessionSettings:
    # The most tokens (estimated, execution_service.history.transcript) of a session's earlier turns a run receives
    # as history; older turns are dropped first.
    history_tokens: int = 32_000


@dataclass(frozen=True, slots=True)
class RenderedPrompt:
    system_instruction: str | None
    user_text: str


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    path: Path
    # sha256 of the file's bytes, hex, prefixed "sha256:".
    version: str
    # Bare model name ("gemini-2.5-flash", or "test" for TestModel); a "googleai/" prefix is stripped.
    model: str
    description: str
    tools: tuple[str, ...]
    limits: AgentLimits
    # The agents it may call as tools (`agents/NAME` in `tools:`), by name; `tools` holds the MCP patterns.
    sub_agents: tuple[str, ...] = ()
    # Generation config (temperature, maxOutputTokens, ...), camelCase keys as in the file.
    config: dict[str, Any] = field(default_factory=dict)
    # JSON schema of the variables beyond `task`.
    input_schema: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    # The front matter's `schedule:` list (execution_service.schedules).
    schedules: tuple[ScheduleSpec, ...] = ()
    session: SessionSettings = field(default_factory=SessionSettings)


@dataclass(frozen=True, slots=True)
class AgentLoadProblem:
    path: Path
    message: str
