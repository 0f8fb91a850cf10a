"""The `schedule:` front matter key: a list of schedules, each

- name: morning                 # [a-z0-9][a-z0-9_-]*, unique in the agent; optional when there is one ("default")
  cron: "0 7 * * 1-5"           # five fields, or six with seconds first
  timezone: Europe/Paris        # IANA name; default UTC
  task: Summarise yesterday's incidents
  variables: { team: ops }      # checked against the agent's input schema
  labels: { env: prod }         # added to the run's labels (keys agentrun.* are reserved)
  missed: skip                  # or run_late_once: what to do with ticks missed while nothing ran
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentrun_core.labels import label_problem
from execution_service.agents.errors import InvalidField, VariablesError
from execution_service.agents.variables import coerce_variables
from execution_service.schedules.cron import CronError, CronTimes
from execution_service.schedules.spec import MissedTicks, ScheduleSpec

KEY = "schedule"
DEFAULT_NAME = "default"
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
_MAX_NAME_CHARS = 64
_KNOWN_KEYS = ("name", "cron", "timezone", "task", "variables", "labels", "missed")
_RESERVED_LABEL_PREFIX = "agentrun."
_MISSED_VALUES = ", ".join(m.value for m in MissedTicks)


def parse_schedules(raw: Any, agent_name: str, input_schema: dict[str, Any]) -> tuple[ScheduleSpec, ...]:
    """The schedules of the front matter value of `schedule` (None when absent). Raises InvalidField."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidField(KEY, "must be a list of schedules, each with at least cron and task")
    schedules = [
        _schedule(item, f"{KEY}[{index}]", agent_name, input_schema, len(raw)) for index, item in enumerate(raw)
    ]
    seen: set[str] = set()
    for index, schedule in enumerate(schedules):
        if schedule.name in seen:
            raise InvalidField(f"{KEY}[{index}].name", f"{schedule.name!r} is used by an earlier schedule")
        seen.add(schedule.name)
    return tuple(schedules)


def _schedule(raw: Any, where: str, agent_name: str, input_schema: dict[str, Any], count: int) -> ScheduleSpec:
    if not isinstance(raw, dict):
        raise InvalidField(where, "must be a mapping with cron and task (and optionally name, timezone, ...)")
    unknown = sorted(set(raw) - set(_KNOWN_KEYS))
    if unknown:
        raise InvalidField(f"{where}.{unknown[0]}", f"unknown key; the known keys are {', '.join(_KNOWN_KEYS)}")
    name = _name(raw.get("name"), where, count)
    cron = _text(raw, "cron", where)
    timezone = _text(raw, "timezone", where, default="UTC")
    try:
        CronTimes(cron, timezone)
    except CronError as exc:
        key = "timezone" if str(exc).startswith("time zone") else "cron"
        raise InvalidField(f"{where}.{key}", str(exc)) from None
    task = _text(raw, "task", where)
    variables = _text_map(raw.get("variables"), f"{where}.variables")
    try:
        coerce_variables(input_schema, variables)
    except VariablesError as exc:
        raise InvalidField(f"{where}.variables", str(exc)) from None
    labels = _text_map(raw.get("labels"), f"{where}.labels")
    for key, value in labels.items():
        problem = label_problem(key, value)
        if problem is not None:
            raise InvalidField(f"{where}.labels", problem)
        if key.startswith(_RESERVED_LABEL_PREFIX):
            raise InvalidField(f"{where}.labels", f"label key {key!r}: keys starting with agentrun. are reserved")
    return ScheduleSpec(
        agent_name=agent_name,
        name=name,
        cron=cron,
        timezone=timezone,
        task=task,
        variables=variables,
        labels=labels,
        missed=_missed(raw.get("missed"), where),
    )


def _name(value: Any, where: str, count: int) -> str:
    if value is None:
        if count > 1:
            raise InvalidField(f"{where}.name", "is required when an agent has several schedules")
        return DEFAULT_NAME
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > _MAX_NAME_CHARS:
        raise InvalidField(
            f"{where}.name",
            f"{value!r} is not a schedule name: lowercase letters, digits, '_' and '-', starting with a letter or "
            f"digit, at most {_MAX_NAME_CHARS} characters",
        )
    return value


def _text(raw: dict[str, Any], key: str, where: str, *, default: str | None = None) -> str:
    value = raw.get(key)
    if value is None:
        if default is None:
            raise InvalidField(f"{where}.{key}", "is required")
        return default
    if not isinstance(value, str) or not value.strip():
        raise InvalidField(f"{where}.{key}", f"must be non-empty text, got {value!r}")
    return value.strip() if key != "task" else value


def _text_map(value: Any, where: str) -> dict[str, str]:
    """A mapping of names to values, the values as the text a run's variables and labels are (JSON for lists and
    mappings, true/false for booleans)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidField(where, f"must be a mapping of names to values, got {type(value).__name__}")
    return {str(key): _as_text(item) for key, item in value.items()}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    if value is None:
        return ""
    return json.dumps(value, default=str)


def _missed(value: Any, where: str) -> MissedTicks:
    if value is None:
        return MissedTicks.SKIP
    try:
        return MissedTicks(value)
    except ValueError:
        raise InvalidField(f"{where}.missed", f"must be one of {_MISSED_VALUES}, got {value!r}") from None
