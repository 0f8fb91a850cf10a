"""The `config` front matter key: generation settings passed to the model, camelCase keys as in the file."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from execution_service.agents.errors import InvalidField

_THINKING_KEYS = ("includeThoughts", "thinkingBudget", "thinkingLevel")


def _number(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"must be a number between {low:g} and {high:g}"
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}"
        return None

    return check


def _positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "must be a whole number >= 1"
    return None


def _string_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return "must be a list of strings"
    return None


def _one(value: Any) -> str | None:
    if isinstance(value, bool) or value != 1:
        return "must be 1 (the agent loop uses a single candidate)"
    return None


def _thinking(value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"must be a mapping with keys among {', '.join(_THINKING_KEYS)}"
    unknown = sorted(set(value) - set(_THINKING_KEYS))
    if unknown:
        return f"unknown key {unknown[0]!r}; the known keys are {', '.join(_THINKING_KEYS)}"
    budget = value.get("thinkingBudget")
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < -1):
        return "thinkingBudget must be a whole number >= -1 (-1: dynamic, 0: off)"
    include = value.get("includeThoughts")
    if include is not None and not isinstance(include, bool):
        return "includeThoughts must be true or false"
    level = value.get("thinkingLevel")
    if level is not None and not isinstance(level, str):
        return "thinkingLevel must be a string"
    return None


CONFIG_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "temperature": _number(0, 2),
    "maxOutputTokens": _positive_int,
    "topP": _number(0, 1),
    "topK": _positive_int,
    "stopSequences": _string_list,
    "candidateCount": _one,
    "thinkingConfig": _thinking,
}


def validate_config(raw: Any) -> dict[str, Any]:
    """A copy of the generation config after checking every key. Raises InvalidField naming the key."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidField("config", "must be a mapping")
    for key, value in raw.items():
        check = CONFIG_CHECKS.get(key)
        if check is None:
            raise InvalidField(f"config.{key}", f"unknown setting; the known settings are {', '.join(CONFIG_CHECKS)}")
        problem = check(value)
        if problem is not None:
            raise InvalidField(f"config.{key}", f"{problem}, got {value!r}")
    return dict(raw)
