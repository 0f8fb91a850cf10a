"""The `input` front matter key: the agent's variables as a JSON schema (the task is never one of them)."""

from __future__ import annotations

import copy
from collections.abc import Coroutine
from typing import Any, TypeVar

import jsonschema
from dotpromptz import picoschema_to_json_schema

from execution_service.agents.errors import InvalidField

TASK = "task"
_INPUT_KEYS = ("schema", "default")
_T = TypeVar("_T")


def build_input_schema(raw_input: Any) -> dict[str, Any]:
    """JSON schema of the variables beyond `task`, from `input.schema` (Picoschema or JSON schema).

    Defaults from `input.default` are copied into the properties as "default" (a variable with a default is
    never missing). Returns {} when the agent declares no variables. Raises InvalidField.
    """
    if raw_input is None:
        return {}
    if not isinstance(raw_input, dict):
        raise InvalidField("input", "must be a mapping with keys schema and default")
    unknown = sorted(set(raw_input) - set(_INPUT_KEYS))
    if unknown:
        raise InvalidField(f"input.{unknown[0]}", f"unknown key; input takes {', '.join(_INPUT_KEYS)}")
    schema = _convert(raw_input.get("schema"))
    defaults = raw_input.get("default") or {}
    if not isinstance(defaults, dict):
        raise InvalidField("input.default", "must be a mapping of variable name to value")
    if not schema and not defaults:
        return {}
    properties: dict[str, Any] = schema.setdefault("properties", {})
    _drop_task(schema, properties)
    for name, value in defaults.items():
        if name == TASK:
            raise InvalidField("input.default.task", "the task is always given by the caller; it has no default")
        if name not in properties:
            raise InvalidField(f"input.default.{name}", "default for a variable that input.schema does not declare")
        _check_default(name, properties[name], value)
        properties[name] = {**properties[name], "default": value}
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidField("input.schema", f"not a valid schema: {exc.message}") from exc
    return schema


def _check_default(name: str, schema: dict[str, Any], value: Any) -> None:
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise InvalidField(f"input.default.{name}", f"{value!r} does not fit the declared type: {error.message}")


def _convert(raw_schema: Any) -> dict[str, Any]:
    if raw_schema is None:
        return {}
    try:
        # Copy: the Picoschema parser edits some values (enums) in place.
        converted = _run_sync(picoschema_to_json_schema(copy.deepcopy(raw_schema)))
    except ValueError as exc:
        raise InvalidField("input.schema", str(exc)) from exc
    if not converted:
        return {}
    if converted.get("type") != "object":
        raise InvalidField("input.schema", "must describe an object: one entry per variable, e.g. {city: string}")
    return dict(converted)


def _drop_task(schema: dict[str, Any], properties: dict[str, Any]) -> None:
    task = properties.pop(TASK, None)
    if task is not None and task.get("type") not in (None, "string", ["string", "null"]):
        raise InvalidField("input.schema.task", "the task is always a string; declare it as `task: string` or omit it")
    required = [name for name in schema.get("required", []) if name != TASK]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)


def _run_sync(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine that never suspends, without an event loop.

    dotpromptz's `picoschema_to_json_schema` is async only so that a schema resolver can be awaited; without a
    resolver it never suspends. Driving it by hand keeps loading synchronous and callable from inside a running
    event loop (asyncio.run would refuse there).
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: _T = done.value
        return result
    coroutine.close()
    raise RuntimeError("picoschema conversion suspended unexpectedly (a schema resolver is not supported)")
