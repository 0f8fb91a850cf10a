"""`agents/NAME` in tools: parsed by the loader, checked as a whole by the registry (missing agents, broken files,
cycles, depth), and reported like any other load problem."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from execution_service.agents.errors import AgentLoadError
from execution_service.agents.loader import load_agent
from execution_service.agents.registry import AgentRegistry

from .helpers import write


def agent(*tools: str, max_depth: int | None = None) -> str:
    limits = f"limits: {{max_depth: {max_depth}}}\n" if max_depth is not None else ""
    listed = ", ".join(tools)
    return f"---\nmodel: test\ntools: [{listed}]\n{limits}---\n{{{{task}}}}\n"


def test_sub_agents_are_kept_apart_from_mcp_patterns(tmp_path: Path) -> None:
    spec = load_agent(write(tmp_path, "boss.prompt", agent("time/*", "agents/helper", "agents/other", max_depth=2)))
    assert spec.tools == ("time/*",)
    assert spec.sub_agents == ("helper", "other")
    assert spec.limits.max_depth == 2
    assert load_agent(write(tmp_path, "plain.prompt", agent("time/*"))).limits.max_depth == 3


@pytest.mark.parametrize(
    ("tools", "problem"),
    [
        (["agents/*"], "agents/* is not supported"),
        (["agents/Bad"], "does not name an agent"),
        (["agents/me"], "an agent cannot call itself"),
        (["agents/x", "agents/x"], "listed twice"),
    ],
)
def test_bad_sub_agent_entries_are_refused(tmp_path: Path, tools: list[str], problem: str) -> None:
    with pytest.raises(AgentLoadError) as caught:
        load_agent(write(tmp_path, "me.prompt", agent(*tools)))
    assert problem in caught.value.message


def test_max_depth_is_bounded(tmp_path: Path) -> None:
    with pytest.raises(AgentLoadError) as caught:
        load_agent(write(tmp_path, "deep.prompt", agent("agents/x", max_depth=11)))
    assert "limits.max_depth: must be at most 10" in caught.value.message


def test_the_registry_refuses_cycles_depth_and_missing_or_broken_sub_agents(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path, "a.prompt", agent("agents/b"))
    write(tmp_path, "b.prompt", agent("agents/c"))
    write(tmp_path, "c.prompt", agent("agents/a"))
    write(tmp_path, "top.prompt", agent("agents/mid", max_depth=1))
    write(tmp_path, "mid.prompt", agent("agents/leaf"))
    write(tmp_path, "leaf.prompt", agent())
    write(tmp_path, "broken.prompt", "---\nmodel: test\nlimits: {max_steps: lots}\n---\nhi\n")
    write(tmp_path, "uses-broken.prompt", agent("agents/broken"))
    write(tmp_path, "zero.prompt", agent("agents/leaf", max_depth=0))
    registry = AgentRegistry(tmp_path, default_model="test")
    with caplog.at_level(logging.WARNING):
        registry.load()
    assert [a.name for a in registry.agents()] == ["leaf", "mid"]
    problems = {p.path.stem: p.message for p in registry.problems()}
    assert problems["a"].startswith("tools: the sub-agents make a cycle (a -> b -> c -> a)")
    assert "cycle" in problems["b"] and "cycle" in problems["c"]
    assert problems["top"] == (
        "limits.max_depth: its sub-agents nest 2 levels deep (top -> mid -> leaf), over its limit of 1"
    )
    assert "agents/broken: that agent's file could not be loaded" in problems["uses-broken"]
    assert "nest 1 level deep (zero -> leaf), over its limit of 0" in problems["zero"]
    assert [p.path.stem for p in registry.problems()] == sorted(problems)  # sorted by path, like file problems
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]

    # Reloading without changes logs nothing new; fixing one file frees the agents that depended on it.
    caplog.clear()
    registry.reload()
    assert not [r for r in caplog.records if "not usable" in r.getMessage()]
    write(tmp_path, "c.prompt", agent())
    registry.reload()
    assert {"a", "b", "c"} <= {a.name for a in registry.agents()}
    assert len(logged) >= 7
