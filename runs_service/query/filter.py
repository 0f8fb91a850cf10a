"""ListRuns filters as SQLAlchemy expressions: parsed against the allow-list, compiled with bound parameters only.

Missing values (a running run's duration and cost, an absent label) make every comparison false except `!=`,
which is true; so `NOT e` always selects exactly the runs `e` does not (two-valued logic, no SQL NULL surprises).
String comparisons are case-sensitive on every backend, prefix matches included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, assert_never

import sqlalchemy as sa
from sqlalchemy.sql.elements import ColumnElement

from runs_service.query.filter_ast import And, Comparison, Expr, Not, Op, Or, Prefix, Suffix, Value
from runs_service.query.filter_fields import FieldKind, resolve_field
from runs_service.query.filter_parser import parse_filter
from runs_service.query.filter_render import render

__all__ = [
    "FilterTables",
    "compile_expr",
    "compile_filter",
    "id_prefix_bounds",
    "normalise_filter",
    "parse_filter",
    "run_id_tail",
]

# The index ix_runs_id_tail covers this expression: the last 8 characters of the run id (what `agentrun runs list`
# prints). The start is a literal (not a bound parameter) so that queries repeat the index's expression exactly.
RUN_ID_TAIL_CHARS = 8
RUN_ID_TAIL_START = 36 - RUN_ID_TAIL_CHARS + 1
_UUID_GROUP_ENDS = (8, 12, 16, 20)  # in hexadecimal digits


@dataclass(frozen=True)
class FilterTables:
    """The tables a filter reads: runs(id, agent_name, model_name, user_name, status, start_time, duration_us,
    total_tokens, cost, labels) and tool_calls(run_id, name)."""

    runs: sa.Table
    tool_calls: sa.Table


def compile_filter(text: str, tables: FilterTables) -> ColumnElement[bool] | None:
    """A WHERE clause for `text` over `tables.runs`; None for an empty filter. Raises InvalidFilter."""
    expr = parse_filter(text)
    return None if expr is None else compile_expr(expr, tables)


def normalise_filter(text: str) -> str:
    """The canonical text of a filter ("" for an empty one), for binding page tokens. Raises InvalidFilter."""
    expr = parse_filter(text)
    return "" if expr is None else render(expr)


def compile_expr(expr: Expr, tables: FilterTables) -> ColumnElement[bool]:
    match expr:
        case Comparison():
            return _comparison(expr, tables)
        case And(operands=operands):
            return sa.and_(*(compile_expr(operand, tables) for operand in operands))
        case Or(operands=operands):
            return sa.or_(*(compile_expr(operand, tables) for operand in operands))
        case Not(operand=operand):
            return sa.not_(compile_expr(operand, tables))
        case _:
            assert_never(expr)


def _comparison(comparison: Comparison, tables: FilterTables) -> ColumnElement[bool]:
    spec = resolve_field(comparison.field, comparison.position)
    match spec.kind:
        case FieldKind.RUN_ID:
            return _run_id(tables.runs.c.id, comparison.op, comparison.value)
        case FieldKind.TOOL:
            tool_calls = tables.tool_calls
            return sa.exists().where(
                tool_calls.c.run_id == tables.runs.c.id,
                _match(tool_calls.c.name, Op.EQ, comparison.value, nullable=False),
            )
        case FieldKind.LABEL:
            label = tables.runs.c.labels[spec.label_key].as_string()
            return _match(label, comparison.op, comparison.value, nullable=True)
        case FieldKind.DURATION:
            assert isinstance(comparison.value, timedelta)
            column = tables.runs.c[spec.column]
            microseconds = comparison.value // timedelta(microseconds=1)
            return _match(column, comparison.op, microseconds, nullable=column.nullable)
        case FieldKind.ENUM:
            column = tables.runs.c[spec.column]
            return _match(column, comparison.op, str(comparison.value), nullable=column.nullable)
        case FieldKind.STRING if comparison.value == Prefix(""):
            # `session_id = "*"`: the runs that have one, as `labels.k = "*"` (a prefix of "" would match every run,
            # those without one included: a delete meant for sub-agent runs would take every run).
            column = tables.runs.c[spec.column]
            return sa.and_(column.is_not(None), column != "")
        case _:
            column = tables.runs.c[spec.column]
            return _match(column, comparison.op, comparison.value, nullable=column.nullable)


def run_id_tail(column: ColumnElement[Any]) -> ColumnElement[str]:
    """The indexed expression: the last RUN_ID_TAIL_CHARS characters of a run id (ids are 36 characters)."""
    return sa.func.substr(column, sa.literal_column(str(RUN_ID_TAIL_START)))


def _canonical(digits: str) -> str:
    """Hexadecimal digits with the hyphens a UUID has after them."""
    return "-".join(
        digits[start:end]
        for start, end in zip((0, *_UUID_GROUP_ENDS), (*_UUID_GROUP_ENDS, 32), strict=True)
        if digits[start:end]
    )


def id_prefix_bounds(prefix: str) -> tuple[str, str | None]:
    """[low, high): the run ids starting with `prefix` (a checked UUID prefix) lie in this range, whatever the
    column's collation, as every id has its hyphens at the same places; high is None after the last possible id."""
    digits = prefix.replace("-", "")
    following = int(digits, 16) + 1
    if following >= 16 ** len(digits):
        return _canonical(digits), None
    return _canonical(digits), _canonical(format(following, f"0{len(digits)}x"))


def _run_id(column: ColumnElement[Any], op: Op, value: Value) -> ColumnElement[bool]:
    """A whole id: the primary key. A prefix: a range scan of the primary key. A suffix: the index on the id's last
    8 characters when it has 8 or more, else a scan. Each also checks the exact characters (bound parameters)."""
    match value:
        case Prefix(text=text):
            low, high = id_prefix_bounds(text)
            bounds = [column >= low, *([column < high] if high is not None else [])]
            return sa.and_(*bounds, sa.func.substr(column, 1, len(text)) == text)
        case Suffix(text=text):
            exact = sa.func.substr(column, 36 - len(text) + 1) == text
            if len(text) < RUN_ID_TAIL_CHARS:
                return exact
            return sa.and_(run_id_tail(column) == text[-RUN_ID_TAIL_CHARS:], exact)
        case str():
            return _operator(column, op, value)
        case _:
            raise AssertionError(f"not a run id value: {value!r}")


def _match(column: ColumnElement[Any], op: Op, value: Value, *, nullable: bool | None) -> ColumnElement[bool]:
    """`column op value`, never NULL: a missing value is unequal to everything and not ordered."""
    if isinstance(value, Prefix):
        # LIKE with % and _ escaped; substr keeps the match case-sensitive on SQLite, whose LIKE is not.
        condition = sa.and_(
            column.startswith(value.text, autoescape=True),
            sa.func.substr(column, 1, len(value.text)) == value.text,
        )
    else:
        condition = _operator(column, op, value)
    if not nullable:
        return condition
    if op is Op.NE:
        return sa.or_(column.is_(None), condition)
    return sa.and_(column.is_not(None), condition)


def _operator(column: ColumnElement[Any], op: Op, value: Value) -> ColumnElement[bool]:
    match op:
        case Op.EQ:
            return column == value
        case Op.NE:
            return column != value
        case Op.LT:
            return column < value
        case Op.LE:
            return column <= value
        case Op.GT:
            return column > value
        case Op.GE:
            return column >= value
        case _:
            assert_never(op)
