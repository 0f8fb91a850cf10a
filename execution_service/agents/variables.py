"""Turn a run's text variables into values of the types the agent's input schema declares."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import jsonschema

from agentrun_core.echo import ECHO_CHARS, cut, shown
from execution_service.agents.errors import VariablesError
from execution_service.agents.input_schema import TASK

_INTEGER = re.compile(r"[+-]?\d+")
_BOOLEANS = {"true": True, "false": False}


class _Invalid(ValueError):
    pass


def coerce_variables(schema: Mapping[str, Any], variables: Mapping[str, str]) -> dict[str, Any]:
    """Typed values for `variables` (text, as they arrive over gRPC) under `schema` (the agent's input_schema).

    integer / number: decimal text; boolean: "true" or "false" (any case); string: as is; array / object: JSON text.
    An empty (or blank) value for a variable that is not a string counts as not given: its default applies, or it
    is missing if required. Declared defaults fill absent variables.
    Raises VariablesError naming every missing, invalid and unknown variable at once.
    """
    properties: Mapping[str, Any] = schema.get("properties", {})
    unknown = [name for name in variables if name not in properties and name != TASK]
    invalid: dict[str, str] = {}
    if TASK in variables:
        invalid[TASK] = "the task is given as the run's task, not as a variable"
    values: dict[str, Any] = {}
    for name, text in variables.items():
        if name in properties:
            if not text.strip() and not _accepts_text(properties[name], text):
                continue
            try:
                values[name] = _coerce(properties[name], text)
            except _Invalid as exc:
                invalid[name] = str(exc)
    with_defaults = {
        **{name: prop["default"] for name, prop in properties.items() if isinstance(prop, dict) and "default" in prop},
        **values,
    }
    missing = [name for name in schema.get("required", []) if name not in with_defaults and name not in invalid]
    if schema and not invalid:
        invalid.update(_schema_violations(schema, with_defaults))
    if missing or invalid or unknown:
        raise VariablesError(missing, invalid, unknown, known=properties)
    return values


def _accepts_text(prop: Any, text: str) -> bool:
    """Whether `text` is a value in its own right for this property (a string, an enum member, "any")."""
    if not isinstance(prop, dict):
        return True
    if "enum" in prop:
        return text in prop["enum"]
    types = _types(prop)
    return not types or "string" in types


def _coerce(prop: Any, text: str) -> Any:
    if not isinstance(prop, dict):
        return text
    types = _types(prop)
    if "enum" in prop:
        return _enum_value(prop["enum"], text)
    for kind in types:
        if kind != "null":
            return _convert(kind, text)
    return text  # no declared type ("any"): keep the text


def _types(prop: dict[str, Any]) -> list[str]:
    declared = prop.get("type")
    if isinstance(declared, str):
        return [declared]
    if isinstance(declared, list):
        return [kind for kind in declared if isinstance(kind, str)]
    return []


def _convert(kind: str, text: str) -> Any:
    stripped = text.strip()
    if kind == "string":
        return text
    if kind == "integer":
        if not _INTEGER.fullmatch(stripped):
            raise _Invalid(f"expected an integer, got {shown(text)}")
        return int(stripped)
    if kind == "number":
        if _INTEGER.fullmatch(stripped):
            return int(stripped)
        try:
            number = float(stripped)
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise _Invalid(f"expected a number, got {shown(text)}")
        return number
    if kind == "boolean":
        if stripped.lower() not in _BOOLEANS:
            raise _Invalid(f'expected a boolean ("true" or "false"), got {shown(text)}')
        return _BOOLEANS[stripped.lower()]
    if kind in ("array", "object"):
        expected = "a JSON array" if kind == "array" else "a JSON object"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Invalid(f"expected {expected}, got text that is not JSON ({exc.msg})") from exc
        if not isinstance(value, list if kind == "array" else dict):
            raise _Invalid(f"expected {expected}, got {shown(text)}")
        return value
    if kind == "null":
        return None
    raise _Invalid(f"unsupported type {kind!r} in the agent's input schema")


def _enum_value(options: list[Any], text: str) -> Any:
    for option in options:
        if option is None:
            continue
        if (isinstance(option, str) and option == text) or (
            not isinstance(option, str) and json.dumps(option) == text.strip()
        ):
            return option
    allowed = ", ".join(repr(option) for option in options if option is not None)
    raise _Invalid(f"expected one of {allowed}, got {shown(text)}")


def _schema_violations(schema: Mapping[str, Any], values: dict[str, Any]) -> dict[str, str]:
    """Checks the schema cannot express as single-value conversions (array items, nested objects, ...)."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    found: dict[str, str] = {}
    for error in validator.iter_errors(values):
        if error.validator in ("required", "additionalProperties"):
            continue  # reported as missing / unknown
        name = str(error.path[0]) if error.path else "variables"
        found.setdefault(cut(name, ECHO_CHARS), cut(error.message, 200))
    return found
