"""Parsing mcp.json: both transports, ${VAR} expansion, and errors that name the server and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from execution_service.tools.mcp_config import (
    HttpServer,
    McpConfigError,
    StdioServer,
    load_mcp_config,
    parse_mcp_config,
)

ENV = {"HOME_DIR": "/home/agent", "TOKEN": "s3cret", "TZ_NAME": "UTC"}


def test_stdio_and_http_servers() -> None:
    config = parse_mcp_config(
        {
            "mcpServers": {
                "time": {
                    "command": "mcp-server-time",
                    "args": ["--local-timezone", "${TZ_NAME}"],
                    "env": {"HOME": "${HOME_DIR}", "LEVEL": "${LOG_LEVEL:-info}"},
                    "cwd": "${HOME_DIR}/work",
                },
                "docs": {
                    "type": "http",
                    "url": "https://docs.example/mcp",
                    "headers": {"Authorization": "Bearer ${TOKEN}", "X-Literal": "$${NOT_EXPANDED}"},
                },
                "bare": {"command": "server"},
            }
        },
        environ=ENV,
    )
    assert config["time"] == StdioServer(
        name="time",
        command="mcp-server-time",
        args=("--local-timezone", "UTC"),
        env={"HOME": "/home/agent", "LEVEL": "info"},
        cwd="/home/agent/work",
    )
    assert config["docs"] == HttpServer(
        name="docs",
        url="https://docs.example/mcp",
        headers={"Authorization": "Bearer s3cret", "X-Literal": "${NOT_EXPANDED}"},
    )
    assert config["bare"] == StdioServer(name="bare", command="server")


def test_expansion_uses_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRUN_TEST_MCP_ARG", "from-env")
    config = parse_mcp_config({"mcpServers": {"s": {"command": "x", "args": ["${AGENTRUN_TEST_MCP_ARG}"]}}})
    assert isinstance(config["s"], StdioServer) and config["s"].args == ("from-env",)


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ({"s": {"command": "x", "env": {"K": "${MISSING_VAR}"}}}, r"'s'.*env\.K.*MISSING_VAR.*not set"),
        ({"s": {"url": "http://h/mcp", "headers": {"A": "${MISSING_VAR}"}}}, r"'s'.*headers\.A.*MISSING_VAR"),
        ({"s": {"command": "x", "url": "http://h"}}, r"'s'.*either \"command\".*or \"url\""),
        ({"s": {}}, r"'s'.*needs \"command\""),
        ({"s": {"command": "x", "argz": []}}, r"'s'.*unknown key.*'argz'"),
        ({"s": {"command": "x", "args": "--flag"}}, r"'s'.*\"args\" must be a list"),
        ({"s": {"command": "x", "args": [1]}}, r"'s'.*args\[0\].*must be a string, got a number"),
        ({"s": {"command": "x", "env": {"K": 1}}}, r"'s'.*env\.K.*must be a string"),
        ({"s": {"command": ""}}, r"'s'.*\"command\" is empty"),
        ({"s": {"url": "ftp://h"}}, r"'s'.*must start with http"),
        ({"s": {"command": "x", "disabled": "yes"}}, r"'s'.*\"disabled\" must be true or false, got a string"),
        ({"s": {"type": "http", "command": "x"}}, r"'s'.*\"type\" is 'http' but \"command\" means stdio"),
        ({"s": "x"}, r"'s'.*must be an object, got a string"),
        ({"a/b": {"command": "x"}}, r"'a/b' is invalid"),
        ({"agents": {"command": "x"}}, r"'agents' is reserved: agents name their sub-agents as agents/NAME"),
    ],
)
def test_errors_name_server_and_problem(servers: dict, expected: str) -> None:
    with pytest.raises(McpConfigError, match=expected):
        parse_mcp_config({"mcpServers": servers}, environ={})


@pytest.mark.parametrize(
    ("data", "expected"),
    [([], "must be a JSON object"), ({}, 'no "mcpServers"'), ({"mcpServers": []}, '"mcpServers" must be an object')],
)
def test_top_level_errors(data: object, expected: str) -> None:
    with pytest.raises(McpConfigError, match=expected):
        parse_mcp_config(data, environ={})


def test_load_from_file(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"web": {"url": "http://127.0.0.1:1/mcp"}}}), encoding="utf-8")
    assert load_mcp_config(path, environ={}) == {"web": HttpServer(name="web", url="http://127.0.0.1:1/mcp")}

    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(McpConfigError, match="not valid JSON"):
        load_mcp_config(path)
    with pytest.raises(McpConfigError, match="cannot read"):
        load_mcp_config(tmp_path / "missing.json")


def test_a_config_shared_with_other_mcp_clients_loads(caplog: pytest.LogCaptureFixture) -> None:
    """Other MCP clients' keys are ignored; a disabled server and one of the old HTTP+SSE transport are left out
    (the latter with a warning saying what to declare instead), and the other servers load."""
    servers = {
        "time": {"command": "mcp-server-time", "autoApprove": ["get_current_time"], "timeout": 60, "disabledTools": []},
        "old": {"type": "sse", "url": "http://h/sse"},
        "off": {"command": "x", "disabled": True},
        "web": {"type": "streamable-http", "url": "http://h/mcp", "description": "docs", "disabled": False},
    }
    with caplog.at_level("INFO", logger="execution_service.tools.mcp_config"):
        config = parse_mcp_config({"mcpServers": servers}, environ={})
    assert config == {
        "time": StdioServer(name="time", command="mcp-server-time"),
        "web": HttpServer(name="web", url="http://h/mcp"),
    }
    assert "MCP server 'old' left out: its transport, HTTP+SSE" in caplog.text
    assert "MCP server 'off' is disabled" in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://docs.example.com/mcp", "https://docs.example.com/mcp"),
        ("http://127.0.0.1:9/mcp?api_key=SECRET-123", "http://127.0.0.1:9/mcp?..."),
        ("https://user:SECRET@h.example/mcp#frag", "https://h.example/mcp"),
        ("http://[::1]:8080/mcp", "http://[::1]:8080/mcp"),
    ],
)
def test_an_http_servers_url_is_shown_without_what_may_hold_a_credential(url: str, shown: str) -> None:
    assert HttpServer(name="h", url=url).shown_url == shown
