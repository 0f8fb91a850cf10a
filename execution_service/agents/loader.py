"""Load one agent from its .prompt file (dotprompt: YAML front matter + Handlebars template).

Front matter keys we read:
- model: "googleai/gemini-2.5-flash" or a bare name ("gemini-2.5-flash", "test" for the offline TestModel);
  absent -> the `default_model` argument.
- description, tools ("server/tool" or "server/*" for MCP tools, "agents/NAME" for a sub-agent), config
  (generation settings, camelCase),
- input: {schema: <Picoschema>, default: {...}} for the variables beyond `task`,
- limits: {max_steps, run_timeout, tool_timeout, token_budget, tool_result_bytes, max_depth} (our own key, read
  from the raw front matter).
- schedule: a list of schedules (cron, timezone, task, variables, labels, missed), see execution_service.schedules.
- session: {history_tokens} (our own key): how much of a session's earlier turns a run receives.
`name`, `version`, `variant`, `ext`, `metadata` and namespaced keys ("x.y") are accepted; `name`, when given,
must equal the file name. `output` and `toolDefs` are refused: tools come from MCP servers and the final answer is
text.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from dotpromptz import Dotprompt, DotpromptError, FrontmatterError, ParsedPrompt

from execution_service.agents.errors import AgentLoadError, InvalidField
from execution_service.agents.frontmatter_errors import describe_frontmatter_error
from execution_service.agents.gen_config import validate_config
from execution_service.agents.input_schema import build_input_schema
from execution_service.agents.limits import parse_limits
from execution_service.agents.session import parse_session
from execution_service.agents.spec import AgentSpec
from execution_service.agents.template import check_template
from execution_service.model.names import model_name_problem
from execution_service.schedules.parse import parse_schedules

DEFAULT_MODEL = "gemini-2.5-flash"
AGENT_SUFFIX = ".prompt"
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MODEL_PROVIDER_PREFIX = "googleai/"
# "server/tool" or "server/*": the server as mcp.json names it, the tool as the server does (MCP servers name tools
# in any script, with '/' or ':' too: everything after the first '/', without blanks; '*' only as the whole of it).
_TOOL_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/(?:\*|[^\s*]+)")
# `agents/NAME` in `tools:` names another agent of the directory, called as a tool (a sub-agent); "agents" is
# therefore not an MCP server name agents can use.
SUB_AGENT_PREFIX = "agents/"
_ACCEPTED_KEYS = frozenset(
    {
        "name",
        "description",
        "model",
        "tools",
        "config",
        "input",
        "limits",
        "schedule",
        "session",
        "version",
        "variant",
        "ext",
        "metadata",
    }
)
_REFUSED_KEYS = {
    "output": "structured output is not supported: an agent's final answer is text",
    "toolDefs": "tools come from MCP servers; list them under tools as server/tool or server/*",
    "raw": "reserved by dotprompt",
}


def load_agent(path: Path, *, default_model: str = DEFAULT_MODEL) -> AgentSpec:
    """Parse and validate one agent file. Raises AgentLoadError with a message a person can act on."""
    _check_name(path, path.name.removesuffix(AGENT_SUFFIX))
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AgentLoadError(path, f"cannot read the file: {exc.strerror or exc}") from exc
    return load_agent_from_bytes(path, data, default_model=default_model)


def load_agent_from_bytes(path: Path, data: bytes, *, default_model: str = DEFAULT_MODEL) -> AgentSpec:
    """Like load_agent, for file content already read (the registry hashes what it reads)."""
    name = path.name.removesuffix(AGENT_SUFFIX)
    _check_name(path, name)
    try:
        source = data.decode("utf-8-sig")  # tolerate a byte order mark before the opening ---
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise AgentLoadError(path, f"the file is not UTF-8 text (line {line})") from exc
    try:
        return _build_spec(name, path, source, "sha256:" + hashlib.sha256(data).hexdigest(), default_model)
    except InvalidField as exc:
        raise AgentLoadError(path, str(exc)) from exc


def _check_name(path: Path, name: str) -> None:
    if not NAME_PATTERN.fullmatch(name):
        raise AgentLoadError(
            path,
            f"agent name {name!r} (the file name without {AGENT_SUFFIX}) must match [a-z0-9][a-z0-9_-]*: "
            "lowercase letters, digits, '_' and '-', starting with a letter or digit",
        )


def normalize_model(model: str, key: str = "model") -> str:
    """ "googleai/gemini-2.5-flash" -> "gemini-2.5-flash"; bare names are kept. Raises InvalidField."""
    bare = model.strip().removeprefix(_MODEL_PROVIDER_PREFIX)
    if "/" in bare:
        raise InvalidField(key, f"unsupported provider in {model!r}: use googleai/<model> or a bare Gemini model name")
    if (problem := model_name_problem(bare)) is not None:
        raise InvalidField(key, problem)
    return bare


def _build_spec(name: str, path: Path, source: str, version: str, default_model: str) -> AgentSpec:
    try:
        parsed: ParsedPrompt[Any] = Dotprompt().parse(source, source_name=path.name)
    except FrontmatterError as exc:
        raise AgentLoadError(path, describe_frontmatter_error(exc, source)) from exc
    except (DotpromptError, ValueError) as exc:
        raise AgentLoadError(path, f"cannot parse the file: {exc}") from exc
    raw: dict[str, Any] = dict(parsed.raw or {})
    _check_keys(raw, name)
    check_template(parsed.template)
    description = raw.get("description") or ""
    tools = _tools(raw.get("tools"), name)
    input_schema = build_input_schema(raw.get("input"))
    return AgentSpec(
        name=name,
        path=path,
        version=version,
        model=normalize_model(raw["model"]) if raw.get("model") else normalize_model(default_model, "default_model"),
        description=description.strip(),
        tools=tuple(t for t in tools if not t.startswith(SUB_AGENT_PREFIX)),
        sub_agents=tuple(t.removeprefix(SUB_AGENT_PREFIX) for t in tools if t.startswith(SUB_AGENT_PREFIX)),
        limits=parse_limits(raw.get("limits")),
        config=validate_config(raw.get("config")),
        input_schema=input_schema,
        source=source,
        schedules=parse_schedules(raw.get("schedule"), name, input_schema),
        session=parse_session(raw.get("session")),
    )


def _check_keys(raw: dict[str, Any], name: str) -> None:
    for key in raw:
        if key in _REFUSED_KEYS:
            raise InvalidField(key, _REFUSED_KEYS[key])
        if key not in _ACCEPTED_KEYS and "." not in key:
            known = ", ".join(sorted(_ACCEPTED_KEYS))
            raise InvalidField(key, f"unknown front matter key; the known keys are {known}")
    declared = raw.get("name")
    if declared is not None and declared != name:
        raise InvalidField("name", f"{declared!r} differs from the file name {name!r}; remove it or make them equal")


def _tools(raw: list[str] | None, name: str) -> tuple[str, ...]:
    """The tool patterns as declared: MCP patterns and `agents/NAME` sub-agents. Raises InvalidField."""
    tools = list(raw or [])
    seen: set[str] = set()
    for index, tool in enumerate(tools):
        if not isinstance(tool, str):
            raise InvalidField(f"tools[{index}]", f'{tool!r} is not a tool pattern: write "server/tool" or "server/*"')
        if tool.startswith(SUB_AGENT_PREFIX):
            _check_sub_agent(index, tool, name)
        elif not _TOOL_PATTERN.fullmatch(tool):
            raise InvalidField(f"tools[{index}]", f'{tool!r} is not a tool pattern: write "server/tool" or "server/*"')
        if tool in seen:
            raise InvalidField(f"tools[{index}]", f"{tool!r} is listed twice")
        seen.add(tool)
    return tuple(tools)


def _check_sub_agent(index: int, tool: str, name: str) -> None:
    called = tool.removeprefix(SUB_AGENT_PREFIX)
    if called == "*":
        raise InvalidField(f"tools[{index}]", "name each sub-agent (agents/NAME): agents/* is not supported")
    if not NAME_PATTERN.fullmatch(called):
        raise InvalidField(f"tools[{index}]", f"{tool!r} does not name an agent: write agents/NAME, NAME an agent file")
    if called == name:
        raise InvalidField(f"tools[{index}]", f"{tool!r}: an agent cannot call itself as a sub-agent")
