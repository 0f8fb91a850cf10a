"""Parses `mcp.json`: which MCP servers exist and how to reach them.

The shape is the one most MCP clients use::

    {"mcpServers": {
        "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"], "env": {}, "cwd": "/tmp"},
        "docs": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}
    }}

A server with `command` is started as a subprocess speaking stdio; a server with `url` is reached over streamable
HTTP. An optional `"type"` (`"stdio"`, `"http"`, `"streamable-http"`, `"streamableHttp"`) must agree with that.

The same file often serves other MCP clients too: a server with `"disabled": true` is left out, a server of a
transport agentrun does not speak (`"type": "sse"`) is left out with a warning (an agent naming it is refused with
the reason), and the keys other clients define (`autoApprove`, `alwaysAllow`, `disabledTools`, `timeout`,
`description`, ...) are ignored. Any other unknown key is an error (a typo such as `"argz"` would otherwise start the
server without its arguments).

`${VAR}` and `${VAR:-default}` in `command`, `args`, `env` values, `cwd`, `url` and `headers` values are replaced
from the process environment (or the `environ` mapping given); `$${` escapes a literal `${`. A variable that is
not set and has no default is an error naming the server and the variable.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)


class McpConfigError(ValueError):
    """mcp.json is unreadable or invalid. The message names the server and the problem."""


@dataclass(frozen=True, slots=True)
class StdioServer:
    """An MCP server run as a subprocess, spoken to over its stdin/stdout."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class HttpServer:
    """An MCP server reached over streamable HTTP."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def shown_url(self) -> str:
        """The URL as logs and errors show it: without a user name, password or query, which may hold a credential
        (`?api_key=...`), and without a fragment."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return f"{shown}?..." if parts.query else shown


McpServerConfig = StdioServer | HttpServer

_SERVER_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# `agents/NAME` in an agent's tools names a sub-agent (execution_service.tools.sub_agents), never an MCP server's tool.
RESERVED_SERVER_NAME = "agents"
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Keys of other MCP clients' mcp.json (Claude Desktop, Cursor, Cline, Roo Code, VS Code, Gemini CLI): ignored here.
OTHER_CLIENTS_KEYS = frozenset(
    {
        "autoApprove",
        "alwaysAllow",
        "disabledTools",
        "enabledTools",
        "includeTools",
        "excludeTools",
        "timeout",
        "description",
        "trust",
        "envFile",
        "transportType",
        "networkTimeout",
    }
)
_COMMON_KEYS = frozenset({"type", "disabled"}) | OTHER_CLIENTS_KEYS
_STDIO_KEYS = _COMMON_KEYS | {"command", "args", "env", "cwd"}
_HTTP_KEYS = _COMMON_KEYS | {"url", "headers"}
_STDIO_TYPES = frozenset({"stdio"})
_HTTP_TYPES = frozenset({"http", "streamable-http", "streamableHttp", "streamable_http"})


def load_mcp_config(path: str | Path, environ: Mapping[str, str] | None = None) -> dict[str, McpServerConfig]:
    """Reads and parses an mcp.json file. Raises McpConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise McpConfigError(f"cannot read MCP config {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"MCP config {path} is not valid JSON: {exc}") from exc
    return parse_mcp_config(data, environ)


def parse_mcp_config(data: Any, environ: Mapping[str, str] | None = None) -> dict[str, McpServerConfig]:
    """Parses the decoded JSON of an mcp.json. Raises McpConfigError."""
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise McpConfigError(f"MCP config must be a JSON object, got {_json_type(data)}")
    servers = data.get("mcpServers")
    if servers is None:
        raise McpConfigError('MCP config has no "mcpServers" object')
    if not isinstance(servers, Mapping):
        raise McpConfigError(f'"mcpServers" must be an object, got {_json_type(servers)}')
    parsed: dict[str, McpServerConfig] = {}
    for name, entry in servers.items():
        server = _parse_server(str(name), entry, env)
        if server is not None:
            parsed[name] = server
    return parsed


def _parse_server(name: str, entry: Any, environ: Mapping[str, str]) -> McpServerConfig | None:
    """The server's config; None for a server left out (disabled, or a transport agentrun does not speak)."""
    if not _SERVER_NAME.match(name):
        raise McpConfigError(f"MCP server name {name!r} is invalid: use 1-64 letters, digits, '_', '.' or '-' (no '/')")
    if name == RESERVED_SERVER_NAME:
        raise McpConfigError(
            f"MCP server name {name!r} is reserved: agents name their sub-agents as agents/NAME; rename the server"
        )
    if not isinstance(entry, Mapping):
        raise McpConfigError(f"MCP server {name!r}: must be an object, got {_json_type(entry)}")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise McpConfigError(f'MCP server {name!r}: "disabled" must be true or false, got {_json_type(disabled)}')
    if disabled:
        log.info("MCP server %r is disabled in the MCP config: left out", name)
        return None
    declared_type = entry.get("type")
    if declared_type is not None and not isinstance(declared_type, str):
        raise McpConfigError(f'MCP server {name!r}: "type" must be a string')
    has_command, has_url = "command" in entry, "url" in entry
    if has_command and has_url:
        raise McpConfigError(f'MCP server {name!r}: give either "command" (stdio) or "url" (HTTP), not both')
    if declared_type == "sse":
        log.warning(
            "MCP server %r left out: its transport, HTTP+SSE (deprecated by MCP in 2025-03-26), is not supported; "
            'declare its streamable HTTP endpoint instead ("type": "http")',
            name,
        )
        return None
    if has_command:
        if declared_type is not None and declared_type not in _STDIO_TYPES:
            raise McpConfigError(f'MCP server {name!r}: "type" is {declared_type!r} but "command" means stdio')
        return _parse_stdio(name, entry, environ)
    if has_url:
        if declared_type is not None and declared_type not in _HTTP_TYPES:
            raise McpConfigError(f'MCP server {name!r}: "type" is {declared_type!r} but "url" means streamable HTTP')
        return _parse_http(name, entry, environ)
    raise McpConfigError(f'MCP server {name!r}: needs "command" (stdio) or "url" (streamable HTTP)')


def _parse_stdio(name: str, entry: Mapping[str, Any], environ: Mapping[str, str]) -> StdioServer:
    _reject_unknown_keys(name, entry, _STDIO_KEYS)
    command = _expand(name, "command", _string(name, "command", entry["command"]), environ)
    if not command.strip():
        raise McpConfigError(f'MCP server {name!r}: "command" is empty')
    raw_args = entry.get("args", [])
    if not isinstance(raw_args, list):
        raise McpConfigError(f'MCP server {name!r}: "args" must be a list of strings, got {_json_type(raw_args)}')
    args = tuple(
        _expand(name, f"args[{index}]", _string(name, f"args[{index}]", arg), environ)
        for index, arg in enumerate(raw_args)
    )
    env = _string_map(name, "env", entry.get("env", {}), environ)
    cwd_value = entry.get("cwd")
    cwd = None if cwd_value is None else _expand(name, "cwd", _string(name, "cwd", cwd_value), environ)
    return StdioServer(name=name, command=command, args=args, env=env, cwd=cwd or None)


def _parse_http(name: str, entry: Mapping[str, Any], environ: Mapping[str, str]) -> HttpServer:
    _reject_unknown_keys(name, entry, _HTTP_KEYS)
    url = _expand(name, "url", _string(name, "url", entry["url"]), environ)
    if not url.startswith(("http://", "https://")):
        raise McpConfigError(f'MCP server {name!r}: "url" must start with http:// or https://, got {url!r}')
    headers = _string_map(name, "headers", entry.get("headers", {}), environ)
    return HttpServer(name=name, url=url, headers=headers)


def _reject_unknown_keys(name: str, entry: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = ", ".join(repr(key) for key in sorted(set(entry) - allowed))
    if unknown:
        raise McpConfigError(f"MCP server {name!r}: unknown key(s) {unknown}; allowed: {', '.join(sorted(allowed))}")


def _string(name: str, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise McpConfigError(f"MCP server {name!r}: {key!r} must be a string, got {_json_type(value)}")
    return value


def _string_map(name: str, key: str, value: Any, environ: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise McpConfigError(f"MCP server {name!r}: {key!r} must be an object of strings, got {_json_type(value)}")
    return {str(k): _expand(name, f"{key}.{k}", _string(name, f"{key}.{k}", v), environ) for k, v in value.items()}


def _expand(name: str, where: str, value: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        variable, default = match.group(1), match.group(2)
        if variable in environ:
            return environ[variable]
        if default is not None:
            return default
        raise McpConfigError(
            f"MCP server {name!r}: {where} uses ${{{variable}}} but environment variable {variable} is not set"
        )

    return _VARIABLE.sub(replace, value)


def _json_type(value: Any) -> str:
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "a list"
        case Mapping():
            return "an object"
        case _:
            return type(value).__name__


def resolve_command(command: str) -> str:
    """The executable for a stdio server's command.

    "python"/"python3" mean this service's own interpreter (so servers written in Python see the same installed
    packages); other bare commands are looked up beside the interpreter first (a virtual environment's bin/, where
    pip puts MCP servers such as mcp-server-time even when the environment is not activated), then on PATH.
    """
    if command in ("python", "python3"):
        return sys.executable
    if os.sep in command:
        return command
    beside = Path(sys.executable).parent / command
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(command) or command
