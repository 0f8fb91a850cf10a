"""Writes a parsed filter back as canonical text: one spelling per meaning.

Whitespace is single spaces, strings are double-quoted, statuses lose the RUN_STATUS_ prefix, timestamps become
UTC with microseconds, durations are seconds, numbers lose redundant zeros, and parentheses appear only where
precedence needs them. Filters that mean the same by these rules render to the same text, so the text can bind a
page token to its filter.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import assert_never

from agentrun_core.domain import RunStatus
from runs_service.query.filter_ast import And, Comparison, Expr, Not, Or, Prefix, Suffix, Value


def render(expr: Expr) -> str:
    match expr:
        case Comparison(field=field, op=op, value=value):
            return f"{field} {op.value} {render_value(value)}"
        case And(operands=operands):
            return " AND ".join(_wrap(operand, isinstance(operand, Or)) for operand in operands)
        case Or(operands=operands):
            return " OR ".join(render(operand) for operand in operands)
        case Not(operand=operand):
            return "NOT " + _wrap(operand, isinstance(operand, And | Or))
        case _:
            assert_never(expr)


def render_value(value: Value) -> str:
    match value:
        case RunStatus():
            return value.value
        case Prefix(text=text):
            return _quote(text)[:-1] + '*"'
        case Suffix(text=text):
            return '"*' + _quote(text)[1:]
        case str():
            return _quote(value).removesuffix('*"') + ('\\*"' if value.endswith("*") else "")
        case bool():
            raise TypeError("booleans are not filter values")
        case int():
            return str(value)
        case Decimal():
            return _decimal(value)
        case datetime():
            return f'"{value.year:04d}-{value:%m-%dT%H:%M:%S.%f}Z"'
        case timedelta():
            microseconds = value // timedelta(microseconds=1)
            return _decimal(Decimal(microseconds).scaleb(-6)) + "s"
        case _:
            assert_never(value)


def _wrap(expr: Expr, parenthesise: bool) -> str:
    text = render(expr)
    return f"({text})" if parenthesise else text


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text
