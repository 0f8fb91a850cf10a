"""The allow-list of fields a ListRuns filter may name, their types and the operators each accepts."""

from __future__ import annotations

import difflib
import enum
from dataclasses import dataclass

from agentrun_core.echo import shown
from agentrun_core.labels import label_key_problem
from runs_service.errors import InvalidFilter
from runs_service.query.filter_ast import Op


class FieldKind(enum.Enum):
    RUN_ID = "run_id"
    STRING = "string"
    ENUM = "enum"
    TIMESTAMP = "timestamp"
    DURATION = "duration"
    INTEGER = "integer"
    DECIMAL = "decimal"
    LABEL = "label"
    TOOL = "tool"


EQUALITY = frozenset({Op.EQ, Op.NE})
ALL_OPERATORS = frozenset(Op)
LABEL_PREFIX = "labels."


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One allowed field. `column` names the runs column (empty for labels and tool)."""

    name: str
    kind: FieldKind
    operators: frozenset[Op]
    column: str = ""
    label_key: str = ""
    # An INTEGER field's width: its column's (and its proto field's) range; a literal outside it is InvalidFilter.
    integer_bits: int = 64


FIELDS: dict[str, FieldSpec] = {
    spec.name: spec
    for spec in (
        FieldSpec("id", FieldKind.RUN_ID, EQUALITY, "id"),
        FieldSpec("agent_name", FieldKind.STRING, EQUALITY, "agent_name"),
        FieldSpec("model_name", FieldKind.STRING, EQUALITY, "model_name"),
        FieldSpec("user", FieldKind.STRING, EQUALITY, "user_name"),
        FieldSpec("status", FieldKind.ENUM, EQUALITY, "status"),
        FieldSpec("start_time", FieldKind.TIMESTAMP, ALL_OPERATORS, "start_time"),
        FieldSpec("duration", FieldKind.DURATION, ALL_OPERATORS, "duration_us"),
        FieldSpec("total_tokens", FieldKind.INTEGER, ALL_OPERATORS, "total_tokens"),
        FieldSpec("cost", FieldKind.DECIMAL, ALL_OPERATORS, "cost"),
        # Composition: `parent_run_id = ""` selects top-level runs.
        FieldSpec("session_id", FieldKind.STRING, EQUALITY, "session_id"),
        FieldSpec("parent_run_id", FieldKind.STRING, EQUALITY, "parent_run_id"),
        FieldSpec("root_run_id", FieldKind.STRING, EQUALITY, "root_run_id"),
        FieldSpec("depth", FieldKind.INTEGER, ALL_OPERATORS, "depth", integer_bits=32),
        FieldSpec("tool", FieldKind.TOOL, frozenset({Op.EQ})),
    )
}

# "tool" last, as in FIELDS.
ALLOWED_FIELDS_TEXT = ", ".join([*list(FIELDS)[:-1], "labels.<key>", "tool"])


def resolve_field(name: str, position: int) -> FieldSpec:
    """The spec of field `name` (written at `position`), or InvalidFilter naming the allowed fields."""
    spec = FIELDS.get(name)
    if spec is not None:
        return spec
    if name.startswith(LABEL_PREFIX):
        key = name[len(LABEL_PREFIX) :]
        problem = label_key_problem(key)
        if problem is not None:
            raise InvalidFilter(problem, position + len(LABEL_PREFIX))
        return FieldSpec(name, FieldKind.LABEL, EQUALITY, label_key=key)
    raise InvalidFilter(_unknown_field_message(name), position)


def check_operator(spec: FieldSpec, op: Op, position: int) -> None:
    if op not in spec.operators:
        allowed = " or ".join(o.value for o in Op if o in spec.operators)
        hint = '; to exclude a tool write NOT tool = "name"' if spec.kind is FieldKind.TOOL else ""
        raise InvalidFilter(f"operator {op.value} is not allowed for {spec.name}; use {allowed}{hint}", position)


def _unknown_field_message(name: str) -> str:
    if name == "labels":
        return f"a label filter names its key, as in labels.env; allowed fields: {ALLOWED_FIELDS_TEXT}"
    if name.startswith("-"):
        return f"unexpected '-' before {shown(name[1:])}: negation is written NOT"
    close = difflib.get_close_matches(name, [*FIELDS, "user_name", "labels"], n=1)
    aliases = {"user_name": "user", "labels": "labels.<key>"}
    suggestion = f"did you mean {aliases.get(close[0], close[0])}? " if close else ""
    return f"unknown field {shown(name)}; {suggestion}allowed fields: {ALLOWED_FIELDS_TEXT}"
