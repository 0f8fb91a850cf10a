"""Errors raised while loading an agent file or rendering its prompt."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from agentrun_core.echo import ECHO_ITEMS, cut, shown_list


class AgentLoadError(Exception):
    """An agent file cannot be used. `message` says what is wrong and where, without the path."""

    def __init__(self, path: Path, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


class InvalidField(ValueError):
    """A front matter value is wrong. `key` is its dotted location, e.g. "limits.max_steps"."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class VariablesError(ValueError):
    """The variables given for a run do not fit the agent's input schema.

    missing: required variables that were not given (and have no default).
    invalid: variable name -> what is wrong with its value (expected type, allowed values, ...).
    unknown: names the agent does not declare (typos must not pass silently).
    """

    def __init__(
        self,
        missing: Iterable[str],
        invalid: Mapping[str, str],
        unknown: Iterable[str] = (),
        known: Iterable[str] = (),
    ) -> None:
        self.missing = sorted(missing)
        self.invalid = dict(sorted(invalid.items()))
        self.unknown = sorted(unknown)
        self.known = sorted(known)
        super().__init__(self._describe())

    def _describe(self) -> str:
        parts: list[str] = []
        if self.missing:
            parts.append("missing required variables: " + ", ".join(self.missing))
        if self.invalid:
            invalid = list(self.invalid.items())
            described = "; ".join(f"{name}: {cut(why, 200)}" for name, why in invalid[:ECHO_ITEMS])
            more = f"; and {len(invalid) - ECHO_ITEMS} more" if len(invalid) > ECHO_ITEMS else ""
            parts.append(f"invalid variables: {described}{more}")
        if self.unknown:
            known = ", ".join(self.known) if self.known else "none besides the task"
            parts.append(f"unknown variables: {shown_list(self.unknown)} (this agent takes: {known})")
        return "; ".join(parts) if parts else "invalid variables"


class PromptRenderError(RuntimeError):
    """The agent's template failed to render (a template error, or content this service cannot send)."""

    def __init__(self, agent: str, message: str) -> None:
        self.agent = agent
        self.message = message
        super().__init__(f"agent {agent!r}: {message}")
