"""Broken agent files: each gives one problem that names the file and what is wrong; good files still load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from execution_service.agents.errors import AgentLoadError
from execution_service.agents.loader import load_agent
from execution_service.agents.registry import AgentRegistry

from .helpers import GOOD_AGENT, write

BROKEN: dict[str, tuple[str, list[str]]] = {
    # filename: (content, substrings the message must contain)
    "bad-yaml.prompt": (
        "---\ndescription: ok\nmodel: gemini: 2.5\n---\n{{task}}\n",
        ["not valid YAML", "line 3", "model: gemini: 2.5", "mapping values are not allowed"],
    ),
    "no-closing.prompt": ("---\nmodel: test\n{{task}}\n", ['no closing "---"']),
    "duplicate-key.prompt": ("---\nmodel: test\nmodel: test\n---\nx\n", ["duplicate", "line 3"]),
    "tools-not-list.prompt": ("---\ntools: time/*\n---\nx\n", ["'tools'", "line 2", "list"]),
    "unknown-config.prompt": (
        "---\nconfig:\n  temprature: 0.5\n---\nx\n",
        ["config.temprature", "unknown setting", "temperature", "maxOutputTokens"],
    ),
    "bad-temperature.prompt": ("---\nconfig: {temperature: 3}\n---\nx\n", ["config.temperature", "between 0 and 2"]),
    "bad-candidates.prompt": ("---\nconfig: {candidateCount: 2}\n---\nx\n", ["config.candidateCount", "must be 1"]),
    "bad-max-tokens.prompt": ("---\nconfig: {maxOutputTokens: 0}\n---\nx\n", ["config.maxOutputTokens"]),
    "bad-stop.prompt": ("---\nconfig: {stopSequences: [1]}\n---\nx\n", ["config.stopSequences", "list of strings"]),
    "bad-thinking.prompt": (
        "---\nconfig: {thinkingConfig: {budget: 5}}\n---\nx\n",
        ["config.thinkingConfig", "budget", "thinkingBudget"],
    ),
    "bad-tool.prompt": ("---\ntools: [time/*, git]\n---\nx\n", ["tools[1]", "'git'", "server/tool"]),
    "bad-tool-glob.prompt": ("---\ntools: ['time/get_*']\n---\nx\n", ["tools[0]", "server/*"]),
    "dup-tool.prompt": ("---\ntools: [time/*, time/*]\n---\nx\n", ["tools[1]", "twice"]),
    "negative-steps.prompt": ("---\nlimits: {max_steps: -1}\n---\nx\n", ["limits.max_steps", "-1"]),
    "float-steps.prompt": ("---\nlimits: {max_steps: 2.5}\n---\nx\n", ["limits.max_steps", "whole number"]),
    "bad-duration.prompt": ("---\nlimits: {run_timeout: 10 minutes}\n---\nx\n", ["limits.run_timeout", "10 minutes"]),
    "bad-budget.prompt": ("---\nlimits: {token_budget: -5}\n---\nx\n", ["limits.token_budget"]),
    "tiny-results.prompt": ("---\nlimits: {tool_result_bytes: 10}\n---\nx\n", ["limits.tool_result_bytes", "256"]),
    "unknown-limit.prompt": ("---\nlimits: {max_step: 3}\n---\nx\n", ["limits.max_step", "max_steps"]),
    "unknown-key.prompt": ("---\nlimit: {max_steps: 3}\n---\nx\n", ["limit", "unknown front matter key", "limits"]),
    "bad-model.prompt": ("---\nmodel: openai/gpt-4o\n---\nx\n", ["model", "openai/gpt-4o"]),
    # google-genai refuses '..' in a model name: every run of the agent would fail INTERNAL.
    "dotdot-model.prompt": ("---\nmodel: gemini..flash\n---\nx\n", ["model", "'gemini..flash' is not a model name"]),
    "bad-schema.prompt": ("---\ninput:\n  schema:\n    city: strng\n---\nx\n", ["input.schema", "strng"]),
    "bad-default.prompt": (
        "---\ninput:\n  schema:\n    n?: integer\n  default:\n    n: many\n---\nx\n",
        ["input.default.n", "'many'"],
    ),
    "default-unknown.prompt": ("---\ninput:\n  default:\n    z: 1\n---\nx\n", ["input.default.z"]),
    "output.prompt": ("---\noutput:\n  format: json\n---\nx\n", ["output", "not supported"]),
    "bad-template.prompt": ("---\nmodel: test\n---\n{{#if x}}never closed\n", ["template", "unclosed"]),
    "bad-role.prompt": ('---\nmodel: test\n---\n{{role "assistant"}}hi\n', ["template", "assistant"]),
    "name-mismatch.prompt": ("---\nname: other\n---\nx\n", ["name", "'other'"]),
    "Bad_Name.prompt": (GOOD_AGENT, ["'Bad_Name'", "[a-z0-9][a-z0-9_-]*"]),
    "clock.variant.prompt": (GOOD_AGENT, ["'clock.variant'"]),
    "not-utf8.prompt": ("", ["not UTF-8"]),
}


def _write_all(directory: Path) -> None:
    for filename, (content, _) in BROKEN.items():
        if filename == "not-utf8.prompt":
            (directory / filename).write_bytes(b"---\nmodel: test\n---\n\xff\xfe\n")
        else:
            write(directory, filename, content)
    write(directory, "good.prompt", GOOD_AGENT)
    write(directory, "also-good.prompt", GOOD_AGENT.replace("A good agent.", "Another one."))
    write(directory, "ignored.txt", "not an agent")


@pytest.mark.parametrize("filename", sorted(BROKEN))
def test_each_broken_file_raises_an_actionable_error(tmp_path: Path, filename: str) -> None:
    _write_all(tmp_path)
    with pytest.raises(AgentLoadError) as caught:
        load_agent(tmp_path / filename)
    for expected in BROKEN[filename][1]:
        assert expected in caught.value.message, caught.value.message


def test_registry_keeps_good_files_and_records_each_problem(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _write_all(tmp_path)
    registry = AgentRegistry(tmp_path, default_model="test")
    with caplog.at_level(logging.WARNING, logger="execution_service.agents.registry"):
        registry.load()
    assert [agent.name for agent in registry.agents()] == ["also-good", "good"]
    problems = {problem.path.name: problem.message for problem in registry.problems()}
    assert set(problems) == set(BROKEN)
    for filename, (_, expected) in BROKEN.items():
        for text in expected:
            assert text in problems[filename], problems[filename]
    warned = {record.path for record in caplog.records if record.levelno == logging.WARNING}  # type: ignore[attr-defined]
    assert warned == {str(tmp_path / filename) for filename in BROKEN}


def test_an_agent_naming_an_mcp_server_mcp_json_does_not_declare_is_a_problem_not_a_failed_run(
    tmp_path: Path,
) -> None:
    (tmp_path / "typo.prompt").write_text("---\nmodel: test\ntools: [tme/get_current_time, time/*]\n---\n{{task}}\n")
    (tmp_path / "fine.prompt").write_text("---\nmodel: test\ntools: [time/*]\n---\n{{task}}\n")
    registry = AgentRegistry(tmp_path, default_model="test", known_servers=["time", "git"])
    registry.load()
    assert [agent.name for agent in registry.agents()] == ["fine"]
    (problem,) = registry.problems()
    assert problem.path.name == "typo.prompt"
    assert problem.message == (
        "tools: 'tme/get_current_time' names an MCP server that mcp.json does not declare (declared: git, time)"
    )
    # Without the list of servers (e.g. tools checked elsewhere) nothing is refused.
    unchecked = AgentRegistry(tmp_path, default_model="test")
    unchecked.load()
    assert [agent.name for agent in unchecked.agents()] == ["fine", "typo"]
