from __future__ import annotations

from pathlib import Path

import pytest

from execution_service.agents.durations import parse_duration
from execution_service.agents.errors import AgentLoadError
from execution_service.agents.loader import load_agent
from execution_service.agents.spec import AgentLimits

from .helpers import EXAMPLES, GOOD_AGENT, write


def test_clock_example() -> None:
    agent = load_agent(EXAMPLES / "clock.prompt")
    assert agent.name == "clock"
    assert agent.model == "gemini-2.5-flash"
    assert agent.tools == ("time/*",)
    assert agent.limits == AgentLimits(max_steps=6, run_timeout_s=60.0, tool_timeout_s=10.0, token_budget=0)
    assert agent.description
    assert agent.input_schema == {}
    assert agent.version.startswith("sha256:") and len(agent.version) == len("sha256:") + 64
    assert agent.source == (EXAMPLES / "clock.prompt").read_text(encoding="utf-8")


def test_repo_reviewer_example() -> None:
    agent = load_agent(EXAMPLES / "repo-reviewer.prompt")
    assert agent.name == "repo-reviewer"
    assert all(tool.startswith("git/") for tool in agent.tools)
    props = agent.input_schema["properties"]
    assert props["repo_path"]["default"] == "."
    assert props["max_commits"]["type"] == ["integer", "null"]
    assert "task" not in props
    assert "required" not in agent.input_schema


def test_files_example() -> None:
    agent = load_agent(EXAMPLES / "files.prompt")
    assert agent.tools == ("filesystem/*",)
    assert set(agent.input_schema["properties"]) == {"root"}
    assert "required" not in agent.input_schema


def test_version_changes_with_content(tmp_path: Path) -> None:
    path = write(tmp_path, "a.prompt", GOOD_AGENT)
    first = load_agent(path).version
    assert load_agent(path).version == first
    path.write_text(GOOD_AGENT + "\nMore.\n", encoding="utf-8")
    assert load_agent(path).version != first


@pytest.mark.parametrize(
    ("model_line", "default_model", "expected"),
    [
        ("model: googleai/gemini-2.5-flash\n", "x", "gemini-2.5-flash"),
        ("model: gemini-2.5-pro\n", "x", "gemini-2.5-pro"),
        ("model: test\n", "x", "test"),
        ("", "gemini-2.0-flash", "gemini-2.0-flash"),
        ("", "googleai/gemini-2.0-flash", "gemini-2.0-flash"),
    ],
)
def test_model_names(tmp_path: Path, model_line: str, default_model: str, expected: str) -> None:
    path = write(tmp_path, "m.prompt", f"---\n{model_line}description: d\n---\n{{{{task}}}}\n")
    assert load_agent(path, default_model=default_model).model == expected


def test_no_front_matter_uses_defaults(tmp_path: Path) -> None:
    agent = load_agent(write(tmp_path, "plain.prompt", "Just do it: {{task}}\n"), default_model="test")
    assert agent.model == "test"
    assert agent.tools == ()
    assert agent.limits == AgentLimits()
    assert agent.description == ""


def test_limits_and_config(tmp_path: Path) -> None:
    text = """---
config:
  temperature: 0.5
  maxOutputTokens: 100
  topP: 0.9
  topK: 40
  stopSequences: ["END"]
  candidateCount: 1
  thinkingConfig: {thinkingBudget: 1024, includeThoughts: false}
limits:
  max_steps: 3
  run_timeout: 2m
  tool_timeout: 500ms
  token_budget: 10000
  tool_result_bytes: 4096
---
{{task}}
"""
    agent = load_agent(write(tmp_path, "l.prompt", text))
    assert agent.limits == AgentLimits(
        max_steps=3, run_timeout_s=120.0, tool_timeout_s=0.5, token_budget=10000, tool_result_bytes=4096
    )
    assert agent.config["maxOutputTokens"] == 100
    assert agent.config["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": False}


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30.0), ("2m", 120.0), ("1h", 3600.0), ("500ms", 0.5), ("1m30s", 90.0), (45, 45.0), (1.5, 1.5), ("7", 7.0)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "10 minutes", "-5s", "0s", 0, -1, True, "1d", None, [1]])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError, match=r"duration|more than zero"):
        parse_duration(value)


def test_picoschema_types_and_task_excluded(tmp_path: Path) -> None:
    text = """---
input:
  schema:
    task: string
    city: string, The city
    days?: integer
    units(enum): [metric, imperial]
    tags?(array): string
---
{{task}} {{city}}
"""
    schema = load_agent(write(tmp_path, "s.prompt", text)).input_schema
    assert set(schema["properties"]) == {"city", "days", "units", "tags"}
    assert schema["required"] == ["city", "units"]
    assert schema["properties"]["city"] == {"type": "string", "description": "The city"}


def test_load_error_carries_path(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.prompt", "---\nlimits: {max_steps: 0}\n---\nx\n")
    with pytest.raises(AgentLoadError) as caught:
        load_agent(path)
    assert caught.value.path == path
    assert "limits.max_steps" in caught.value.message
    assert str(path) in str(caught.value)


def test_byte_order_mark_does_not_hide_the_front_matter(tmp_path: Path) -> None:
    path = tmp_path / "bom.prompt"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD_AGENT.encode())
    agent = load_agent(path)
    assert agent.tools == ("time/*",)
    assert agent.description == "A good agent."


def test_tools_named_in_any_script_or_with_separators_can_be_listed(tmp_path: Path) -> None:
    text = "---\ntools:\n  - raw/天気\n  - files/read:text\n  - git/log/oneline\n  - time/*\n---\n{{task}}\n"
    agent = load_agent(write(tmp_path, "t.prompt", text), default_model="test")
    assert agent.tools == ("raw/天気", "files/read:text", "git/log/oneline", "time/*")
    with pytest.raises(AgentLoadError, match="is not a tool pattern"):
        load_agent(
            write(tmp_path, "u.prompt", '---\ntools:\n  - "raw/two words"\n---\n{{task}}\n'), default_model="test"
        )
