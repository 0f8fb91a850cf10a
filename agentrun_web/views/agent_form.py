"""The start page's form for one agent: the variables of its input schema (Agent.input_schema_json) as fields.

Variables are sent as text (ExecuteAgentRequest.variables); ExecutionService converts them to the schema's types and
answers INVALID_ARGUMENT naming the variable when one does not fit, which the page shows next to the form.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2

from agentrun_web.views import format as fmt

log = logging.getLogger(__name__)

VARIABLE_PREFIX = "var."


@dataclass(frozen=True, slots=True)
class VariableField:
    name: str
    type: str
    required: bool
    description: str
    # Offered values (an enum, or true/false for a boolean); empty: free text.
    choices: tuple[str, ...]
    default: str

    @property
    def input_name(self) -> str:
        return VARIABLE_PREFIX + self.name


@dataclass(frozen=True, slots=True)
class AgentChoice:
    name: str
    description: str
    model: str
    tools: str
    version: str
    limits: str
    fields: list[VariableField]
    # Set when the schema could not be read (the agent can still be started, with free variables).
    schema_problem: str
    # The MCP servers its tools come from that are down now (Agent.tool_problems): a run would miss those tools.
    tool_problems: tuple[str, ...] = ()


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def variable_fields(schema_json: str) -> list[VariableField]:
    """The schema's properties, required ones first; ValueError when it is not a JSON object schema."""
    if not schema_json.strip():
        return []
    schema = json.loads(schema_json)
    if not isinstance(schema, dict):
        raise ValueError("the input schema is not a JSON object")
    properties = schema.get("properties") or {}
    required = set(schema.get("required") or [])
    fields = []
    for name, raw in properties.items():
        prop = raw if isinstance(raw, dict) else {}
        kind = prop.get("type", "string")
        kind = "/".join(kind) if isinstance(kind, list) else str(kind)
        choices: tuple[str, ...] = ()
        if isinstance(prop.get("enum"), list):
            choices = tuple(_text(value) for value in prop["enum"])
        elif kind == "boolean":
            choices = ("true", "false")
        fields.append(
            VariableField(
                name=name,
                type=kind,
                required=name in required,
                description=str(prop.get("description", "")),
                choices=choices,
                default=_text(prop.get("default")),
            )
        )
    return sorted(fields, key=lambda field: not field.required)


def _limits(limits: ex_pb2.AgentLimits) -> str:
    parts = []
    if limits.max_steps:
        parts.append(f"{limits.max_steps} steps")
    if limits.HasField("run_timeout"):
        parts.append(f"run {fmt.duration(limits.run_timeout)}")
    if limits.HasField("tool_timeout"):
        parts.append(f"tool {fmt.duration(limits.tool_timeout)}")
    if limits.token_budget:
        parts.append(f"{fmt.count(limits.token_budget)} tokens")
    return ", ".join(parts)


def agent_choice(agent: ex_pb2.Agent) -> AgentChoice:
    problem = ""
    try:
        fields = variable_fields(agent.input_schema_json)
    except ValueError as exc:
        log.warning("an agent's input schema cannot be read", extra={"agent": agent.name, "problem": str(exc)})
        fields, problem = [], f"its input schema cannot be read ({exc})"
    return AgentChoice(
        name=agent.name,
        description=agent.description,
        model=agent.model,
        tools=", ".join(agent.tools),
        version=fmt.short_version(agent.version),
        limits=_limits(agent.limits),
        fields=fields,
        schema_problem=problem,
        tool_problems=tuple(agent.tool_problems),
    )


def submitted_variables(form: Mapping[str, Any]) -> dict[str, str]:
    """The non-empty `var.NAME` fields of the form (an empty optional variable is left out, so its default holds)."""
    return {
        key.removeprefix(VARIABLE_PREFIX): str(value)
        for key, value in form.items()
        if key.startswith(VARIABLE_PREFIX) and str(value).strip()
    }


def parse_labels(text: str) -> dict[str, str]:
    """`key=value` per line (or comma-separated); ValueError naming the bad entry."""
    labels: dict[str, str] = {}
    for line in text.replace(",", "\n").splitlines():
        item = line.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"labels are KEY=VALUE, one per line; got {item!r}")
        labels[key.strip()] = value.strip()
    return labels
