"""Checks the sub-agents of a directory's agents as a whole: every `agents/NAME` names a usable agent, no agent
calls itself through others (a cycle), and no tree of sub-agents nests deeper than `limits.max_depth` of the agent
at its top. An agent failing a check, or calling one that fails, is a problem of its file (ListAgents shows it)."""

from __future__ import annotations

from collections.abc import Mapping

from execution_service.agents.loader import SUB_AGENT_PREFIX
from execution_service.agents.spec import AgentSpec


def composition_problems(agents: Mapping[str, AgentSpec], broken: frozenset[str] = frozenset()) -> dict[str, str]:
    """Agent name -> what is wrong with its sub-agents, for every agent that cannot be used because of them.

    `agents`: the agents whose files loaded; `broken`: names of agent files that did not load."""
    problems: dict[str, str] = {}
    for name, agent in agents.items():
        for called in agent.sub_agents:
            if called in broken:
                problems.setdefault(name, f"tools: {SUB_AGENT_PREFIX}{called}: that agent's file could not be loaded")
            elif called not in agents:
                known = ", ".join(sorted(agents)) or "none"
                problems.setdefault(
                    name, f"tools: {SUB_AGENT_PREFIX}{called}: there is no agent {called!r} (agents: {known})"
                )
    for cycle in _cycles(agents):
        path = " -> ".join([*cycle, cycle[0]])
        for name in cycle:
            problems.setdefault(
                name, f"tools: the sub-agents make a cycle ({path}); an agent cannot call itself, even through others"
            )
    _spread(agents, problems)
    heights = _heights(agents, problems)
    for name, (height, chain) in heights.items():
        limit = agents[name].limits.max_depth
        if height > limit:
            levels = f"{height} level{'' if height == 1 else 's'}"
            problems[name] = (
                f"limits.max_depth: its sub-agents nest {levels} deep ({' -> '.join(chain)}), over its limit of {limit}"
            )
    _spread(agents, problems)
    return problems


def _spread(agents: Mapping[str, AgentSpec], problems: dict[str, str]) -> None:
    """An agent calling an unusable agent is unusable too (repeated until nothing changes)."""
    changed = True
    while changed:
        changed = False
        for name, agent in agents.items():
            if name in problems:
                continue
            bad = next((called for called in agent.sub_agents if called in problems), None)
            if bad is not None:
                problems[name] = f"tools: {SUB_AGENT_PREFIX}{bad} cannot be used: {problems[bad]}"
                changed = True


def _cycles(agents: Mapping[str, AgentSpec]) -> list[list[str]]:
    """Each cycle of calls found (depth first, in name order), as the agents on it in call order."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    found: list[list[str]] = []

    def visit(name: str) -> None:
        state[name] = 1
        path.append(name)
        for called in agents[name].sub_agents:
            if called not in agents:
                continue
            if state.get(called) == 1:
                found.append(path[path.index(called) :])
            elif called not in state:
                visit(called)
        path.pop()
        state[name] = 2

    for name in sorted(agents):
        if name not in state:
            visit(name)
    return found


def _heights(agents: Mapping[str, AgentSpec], problems: Mapping[str, str]) -> dict[str, tuple[int, list[str]]]:
    """For each usable agent: how many levels of sub-agents its deepest chain of calls has, and that chain."""
    heights: dict[str, tuple[int, list[str]]] = {}

    def height(name: str) -> tuple[int, list[str]]:
        if name not in heights:
            below = [height(called) for called in agents[name].sub_agents if called in agents]
            deepest = max(below, key=lambda found: found[0], default=(-1, []))
            heights[name] = (deepest[0] + 1, [name, *deepest[1]])
        return heights[name]

    for name in agents:
        if name not in problems:
            height(name)
    return {name: found for name, found in heights.items() if name not in problems}
