"""Checks tool-call arguments against the tool's input JSON schema before anything is sent to the server.

A failure is reported back to the model as text it can act on ("at $.a: 'x' is not of type 'integer'").
"""

from __future__ import annotations

import json
import logging
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

logger = logging.getLogger(__name__)

_MAX_PROBLEMS = 10
_MAX_MESSAGE_CHARS = 300


class ArgumentValidator:
    """Validates arguments; compiled validators are cached per (server, tool) while the schema is unchanged."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[dict[str, Any], Validator | None]] = {}

    def problems(self, server: str, tool: str, schema: dict[str, Any], arguments: Any) -> list[str]:
        """What is wrong with `arguments` (empty when they are valid). A tool whose schema is itself invalid is not
        checked here (the server validates anyway); that is logged once per schema."""
        if not isinstance(arguments, dict):
            return [f"arguments must be a JSON object, got {type(arguments).__name__}"]
        validator = self._validator(server, tool, schema)
        if validator is None:
            return []
        errors = sorted(validator.iter_errors(arguments), key=lambda error: list(error.absolute_path))
        problems = [f"at {error.json_path}: {_shorten(error.message)}" for error in errors[:_MAX_PROBLEMS]]
        if len(errors) > _MAX_PROBLEMS:
            problems.append(f"... and {len(errors) - _MAX_PROBLEMS} more problem(s)")
        return problems

    def _validator(self, server: str, tool: str, schema: dict[str, Any]) -> Validator | None:
        key = (server, tool)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == schema:
            return cached[1]
        validator: Validator | None
        try:
            cls = validator_for(schema, default=Draft202012Validator)
            cls.check_schema(schema)
            validator = cls(schema)
        except SchemaError as exc:
            logger.warning(
                "input schema of tool %r on MCP server %r is not a valid JSON schema (%s); arguments are not checked "
                "locally: %s",
                tool,
                server,
                exc.message,
                json.dumps(schema)[:500],
            )
            validator = None
        self._cache[key] = (schema, validator)
        return validator


def _shorten(message: str) -> str:
    return message if len(message) <= _MAX_MESSAGE_CHARS else message[: _MAX_MESSAGE_CHARS - 3] + "..."
