"""The `limits` front matter key: how far a run of the agent may go."""

from __future__ import annotations

from typing import Any

from execution_service.agents.durations import parse_duration
from execution_service.agents.errors import InvalidField
from execution_service.agents.spec import AgentLimits

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
KNOWN_LIMITS = ("max_steps", "run_timeout", "tool_timeout", "token_budget", "tool_result_bytes", "max_depth")
# The deepest tree of sub-agent runs an agent may ask for (a deeper one is a mistake, not a design).
MAX_SUB_AGENT_DEPTH = 10
# A tool result cut shorter than this would leave the model nothing to work with.
MIN_TOOL_RESULT_BYTES = 256


def parse_limits(raw: Any) -> AgentLimits:
    """Limits from the front matter value of `limits` (None when absent). Raises InvalidField."""
    defaults = AgentLimits()
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise InvalidField("limits", f"must be a mapping with keys {', '.join(KNOWN_LIMITS)}")
    unknown = sorted(set(raw) - set(KNOWN_LIMITS))
    if unknown:
        raise InvalidField(f"limits.{unknown[0]}", f"unknown limit; the known limits are {', '.join(KNOWN_LIMITS)}")
    return AgentLimits(
        max_steps=_int_in_range(raw, "max_steps", defaults.max_steps, 1, _INT32_MAX),
        run_timeout_s=_duration(raw, "run_timeout", defaults.run_timeout_s),
        tool_timeout_s=_duration(raw, "tool_timeout", defaults.tool_timeout_s),
        token_budget=_int_in_range(raw, "token_budget", defaults.token_budget, 0, _INT64_MAX),
        tool_result_bytes=_int_in_range(
            raw, "tool_result_bytes", defaults.tool_result_bytes, MIN_TOOL_RESULT_BYTES, _INT32_MAX
        ),
        max_depth=_int_in_range(raw, "max_depth", defaults.max_depth, 0, MAX_SUB_AGENT_DEPTH),
    )


def _int_in_range(raw: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    if key not in raw:
        return default
    value = raw[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidField(f"limits.{key}", f"must be a whole number >= {low}, got {value!r}")
    if value < low:
        raise InvalidField(f"limits.{key}", f"must be at least {low}, got {value}")
    if value > high:
        raise InvalidField(f"limits.{key}", f"must be at most {high}, got {value}")
    return value


def _duration(raw: dict[str, Any], key: str, default: float) -> float:
    if key not in raw:
        return default
    try:
        return parse_duration(raw[key])
    except ValueError as exc:
        raise InvalidField(f"limits.{key}", str(exc)) from exc
