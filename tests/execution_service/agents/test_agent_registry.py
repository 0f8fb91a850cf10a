from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from execution_service.agents.registry import AgentRegistry

from .helpers import EXAMPLES, GOOD_AGENT, write


def test_examples_directory_loads_without_problems() -> None:
    registry = AgentRegistry(EXAMPLES, default_model="gemini-2.5-flash")
    registry.load()
    assert registry.problems() == []
    assert [agent.name for agent in registry.agents()] == ["clock", "files", "meeting-planner", "repo-reviewer"]
    clock = registry.get("clock")
    assert clock is not None and clock.path == EXAMPLES / "clock.prompt"
    assert registry.get("nope") is None


def test_missing_directory_is_one_problem(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    registry = AgentRegistry(tmp_path / "missing", default_model="test")
    with caplog.at_level(logging.WARNING):
        registry.load()
        registry.reload()
    assert registry.agents() == []
    [problem] = registry.problems()
    assert problem.path == tmp_path / "missing"
    assert "no such directory" in problem.message
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1

    (tmp_path / "missing").mkdir()
    write(tmp_path / "missing", "late.prompt", GOOD_AGENT)
    registry.reload()
    assert registry.problems() == []
    assert [agent.name for agent in registry.agents()] == ["late"]


def test_not_recursive(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "nested.prompt", GOOD_AGENT)
    write(tmp_path, "top.prompt", GOOD_AGENT)
    registry = AgentRegistry(tmp_path, default_model="test")
    registry.load()
    assert [agent.name for agent in registry.agents()] == ["top"]


def test_reload_picks_up_added_changed_fixed_and_removed_files(tmp_path: Path) -> None:
    write(tmp_path, "a.prompt", GOOD_AGENT)
    write(tmp_path, "b.prompt", "---\nlimits: {max_steps: 0}\n---\nx\n")
    registry = AgentRegistry(tmp_path, default_model="test")
    registry.load()
    first_a = registry.get("a")
    assert first_a is not None
    assert [p.path.name for p in registry.problems()] == ["b.prompt"]

    registry.reload()
    assert registry.get("a") is first_a  # unchanged: not re-parsed

    write(tmp_path, "a.prompt", GOOD_AGENT.replace("You are good.", "You are better."))
    write(tmp_path, "b.prompt", GOOD_AGENT)  # fixed
    write(tmp_path, "c.prompt", GOOD_AGENT)  # added
    registry.reload()
    changed_a = registry.get("a")
    assert changed_a is not None and changed_a.version != first_a.version
    assert "better" in changed_a.source
    assert registry.problems() == []
    assert [agent.name for agent in registry.agents()] == ["a", "b", "c"]

    (tmp_path / "c.prompt").unlink()
    registry.reload()
    assert registry.get("c") is None


def test_reload_sees_a_change_that_keeps_size_and_mtime(tmp_path: Path) -> None:
    path = write(tmp_path, "a.prompt", GOOD_AGENT)
    registry = AgentRegistry(tmp_path, default_model="test")
    registry.load()
    before = os.stat(path)
    path.write_text(GOOD_AGENT.replace("good", "nice"), encoding="utf-8")  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    registry.reload()
    agent = registry.get("a")
    assert agent is not None and "nice" in agent.source


def test_reload_logs_a_problem_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "bad.prompt", "---\nmodel: [\n---\nx\n")
    registry = AgentRegistry(tmp_path, default_model="test")
    with caplog.at_level(logging.WARNING, logger="execution_service.agents.registry"):
        registry.load()
        registry.reload()
        registry.reload()
    assert len(caplog.records) == 1
    assert "bad.prompt" in caplog.records[0].path  # type: ignore[attr-defined]


def test_unexpected_error_in_one_file_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from execution_service.agents import registry as registry_module

    real = registry_module.load_agent_from_bytes

    def flaky(path: Path, data: bytes, *, default_model: str):
        if path.name == "boom.prompt":
            raise RuntimeError("kaboom")
        return real(path, data, default_model=default_model)

    monkeypatch.setattr(registry_module, "load_agent_from_bytes", flaky)
    write(tmp_path, "boom.prompt", GOOD_AGENT)
    write(tmp_path, "fine.prompt", GOOD_AGENT)
    registry = AgentRegistry(tmp_path, default_model="test")
    with caplog.at_level(logging.WARNING):
        registry.load()
    assert [agent.name for agent in registry.agents()] == ["fine"]
    [problem] = registry.problems()
    assert problem.path.name == "boom.prompt" and "kaboom" in problem.message
    assert any(record.exc_info for record in caplog.records)
