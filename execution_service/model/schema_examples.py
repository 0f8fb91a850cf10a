"""Plausible example arguments from a tool's JSON schema (used by TestModel to call tools without a real model).

Only required properties are filled. Strings use the property's const/enum/examples/default, else a value
suggested by the property name or format (a "timezone" gets "Europe/Paris", a "url" "https://example.com", a
"path" or "repo_path" "."); integers use their minimum or 1, numbers 1.0, booleans true, arrays hold one item
and objects recurse. Local "$ref"s (#/$defs/..., #/definitions/...) are resolved.
"""

from __future__ import annotations

import re
from typing import Any

_MAX_DEPTH = 8

# (full-match pattern on the lower-case property name, value), first match wins.
_NAME_HINTS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), value)
    for pattern, value in (
        (r".*timezone.*|tz", "Europe/Paris"),
        (r"urls?|.*_urls?|uri|.*_uri", "https://example.com"),
        (r"path|.*_path|dir|directory|.*_dir", "."),
        (r".*email.*", "user@example.com"),
        (r"time", "12:00"),
        (r"date|.*_date", "2026-01-01"),
        (r"branch|.*_branch", "main"),
        (r"revision|rev|ref|commit|.*_sha", "HEAD"),
        (r"message|.*_message", "test message"),
        (r"query|q", "test"),
    )
)

_FORMATS = {
    "date-time": "2026-01-01T12:00:00Z",
    "date": "2026-01-01",
    "time": "12:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "url": "https://example.com",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_arguments(schema: dict[str, Any]) -> dict[str, Any]:
    """Arguments for a tool whose input schema is `schema` (an object schema)."""
    value = _example(schema, "", schema, 0)
    return value if isinstance(value, dict) else {}


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for key in ref[2:].split("/"):
        target = target.get(key) if isinstance(target, dict) else None
    if not isinstance(target, dict):
        return schema
    return {**target, **{k: v for k, v in schema.items() if k != "$ref"}}


def _first_type(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), kind[0] if kind else None)
    if kind is None and "properties" in schema:
        return "object"
    return kind if isinstance(kind, str) else None


def _example(schema: Any, name: str, root: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return None
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][0]
    if isinstance(schema.get("examples"), list) and schema["examples"]:
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            chosen = next((o for o in options if isinstance(o, dict) and o.get("type") != "null"), options[0])
            return _example(chosen, name, root, depth + 1)
    match _first_type(schema):
        case "string":
            return _string(schema, name)
        case "integer":
            return _integer(schema)
        case "number":
            return float(schema.get("minimum", 1.0))
        case "boolean":
            return True
        case "array":
            count = max(1, int(schema.get("minItems", 1)))
            return [_example(schema.get("items", {"type": "string"}), name, root, depth + 1) for _ in range(count)]
        case "object":
            properties = schema.get("properties") or {}
            return {
                key: _example(properties.get(key, {}), key, root, depth + 1)
                for key in schema.get("required") or []
                if isinstance(key, str)
            }
        case "null":
            return None
        case _:
            return _string(schema, name)


def _string(schema: dict[str, Any], name: str) -> str:
    value = _FORMATS.get(str(schema.get("format", ""))) or _name_hint(name) or "example"
    min_length = int(schema.get("minLength", 0))
    if len(value) < min_length:
        value = value + "x" * (min_length - len(value))
    return value


def _name_hint(name: str) -> str | None:
    lowered = name.lower()
    return next((value for pattern, value in _NAME_HINTS if pattern.fullmatch(lowered)), None)


def _integer(schema: dict[str, Any]) -> int:
    if "minimum" in schema:
        return int(schema["minimum"])
    if "exclusiveMinimum" in schema and not isinstance(schema["exclusiveMinimum"], bool):
        return int(schema["exclusiveMinimum"]) + 1
    if "maximum" in schema and schema["maximum"] < 1:
        return int(schema["maximum"])
    return 1
