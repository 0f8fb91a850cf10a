"""Building ListRuns filter expressions (the AIP-160 subset RunsService parses) from command-line options."""

from __future__ import annotations

import re

from agentrun.runs.v1 import run_pb2

_OR = re.compile(r"\bOR\b")


class FilterValueError(ValueError):
    """An option value cannot be turned into a filter term."""


def quote(value: str) -> str:
    """A filter string literal: double quotes, with backslashes and double quotes escaped."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def status_enum_name(value: str) -> str:
    """`failed`, `FAILED` or `RUN_STATUS_FAILED` -> `RUN_STATUS_FAILED`."""
    name = value.strip().upper().replace("-", "_")
    if not name.startswith("RUN_STATUS_"):
        name = f"RUN_STATUS_{name}"
    valid = [v.name for v in run_pb2.RunStatus.DESCRIPTOR.values if v.number != run_pb2.RUN_STATUS_UNSPECIFIED]
    if name not in valid:
        choices = ", ".join(n.removeprefix("RUN_STATUS_").lower() for n in valid)
        raise FilterValueError(f"unknown status {value!r}; one of {choices}")
    return name


def build_filter(
    expression: str = "",
    *,
    agent: str | None = None,
    status: str | None = None,
    user: str | None = None,
    session: str | None = None,
    parent: str | None = None,
    root: str | None = None,
    top_level: bool = False,
) -> str:
    """The user's expression and the shortcut options joined with AND.

    An expression that contains OR is parenthesised, so the AND terms apply to all of it whichever precedence
    the parser gives OR.
    """
    terms: list[str] = []
    expression = expression.strip()
    if expression:
        terms.append(f"({expression})" if _OR.search(expression) else expression)
    if agent:
        terms.append(f"agent_name = {quote(agent)}")
    if status:
        terms.append(f"status = {status_enum_name(status)}")
    if user:
        terms.append(f"user = {quote(user)}")
    if session:
        terms.append(f"session_id = {quote(session)}")
    if parent:
        terms.append(f"parent_run_id = {quote(parent)}")
    if root:
        terms.append(f"root_run_id = {quote(root)}")
    if top_level:
        terms.append('parent_run_id = ""')
    return " AND ".join(terms)
