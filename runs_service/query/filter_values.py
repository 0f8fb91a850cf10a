"""Converts a literal from a filter into the typed value its field expects, or raises InvalidFilter.

Quotes are optional for every value that has no spaces or special characters: `status = COMPLETED` and
`status = "COMPLETED"` mean the same, and so do `duration > 30s` and `duration > "30s"`. A trailing unescaped `*`
is a prefix match for string fields (agent_name, model_name, user, labels.<key>, tool) and is only allowed with `=`.
`id` takes a whole run id, a prefix (`"0190b6e2*"`) or a suffix (`"*2e3f4a5b"`, as `agentrun runs list` prints ids).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

from agentrun_core.domain import RunStatus
from agentrun_core.echo import cut
from agentrun_core.labels import label_value_problem
from runs_service.errors import InvalidFilter
from runs_service.query.filter_ast import Op, Prefix, Suffix, Value
from runs_service.query.filter_fields import FieldKind, FieldSpec

INT64_MAX = 2**63 - 1
MAX_DECIMAL_DIGITS = 38
STATUS_PREFIX = "RUN_STATUS_"

_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"-?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)(us|ms|s|m|h)?", re.ASCII)
_TIMESTAMP = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))",
    re.ASCII,
)
# A run id: a lower-case UUID, hyphens at these positions.
RUN_ID_LENGTH = 36
_RUN_ID_HYPHENS = frozenset({8, 13, 18, 23})
_HEX = frozenset("0123456789abcdef")
_RUN_ID_EXPECTED = 'id expects a run id, a prefix such as "0190b6e2*" or a suffix such as "*2e3f4a5b"'
_MICROSECONDS_PER_UNIT = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}


@dataclass(frozen=True, slots=True)
class Literal:
    """A value as written: `text` is unescaped, `wildcard` marks a trailing unescaped `*`."""

    text: str
    position: int
    wildcard: bool = False


def convert_value(spec: FieldSpec, op: Op, literal: Literal) -> Value:
    match spec.kind:
        case FieldKind.RUN_ID:
            return _run_id(op, literal)
        case FieldKind.STRING | FieldKind.LABEL | FieldKind.TOOL:
            return _string(spec, op, literal)
        case FieldKind.ENUM:
            return _status(literal)
        case FieldKind.TIMESTAMP:
            return _timestamp(spec, literal)
        case FieldKind.DURATION:
            return _duration(spec, literal)
        case FieldKind.INTEGER:
            return _integer(spec, literal)
        case FieldKind.DECIMAL:
            return _decimal(spec, literal)


def _string(spec: FieldSpec, op: Op, literal: Literal) -> str | Prefix:
    if spec.kind is FieldKind.LABEL:
        problem = label_value_problem(spec.label_key, literal.text[:-1] if literal.wildcard else literal.text)
        if problem is not None:
            raise InvalidFilter(f"{problem}: no run can have it", literal.position)
    if not literal.wildcard:
        return literal.text
    if op is not Op.EQ:
        raise InvalidFilter(
            f'a trailing * (prefix match) is only allowed with =; write NOT {spec.name} = "..." to exclude a prefix, '
            "or \\* for a literal *",
            literal.position,
        )
    return Prefix(literal.text[:-1])


def _run_id(op: Op, literal: Literal) -> str | Prefix | Suffix:
    """A whole run id, a Prefix (trailing `*`) or a Suffix (leading `*`); each part must fit the UUID's shape."""
    text = literal.text
    prefix, suffix = literal.wildcard, text.startswith("*")
    part = text[1 if suffix else 0 : -1 if prefix else None]
    if (prefix or suffix) and op is not Op.EQ:
        raise InvalidFilter(
            f'{_RUN_ID_EXPECTED}; a * is only allowed with =, write NOT id = "..." to exclude', literal.position
        )
    if (prefix and suffix) or not part or len(part) > RUN_ID_LENGTH:
        raise InvalidFilter(f"{_RUN_ID_EXPECTED}, got {_show(text)}", literal.position)
    offset = RUN_ID_LENGTH - len(part) if suffix else 0
    for index, char in enumerate(part, start=offset):
        if (char != "-") if index in _RUN_ID_HYPHENS else (char not in _HEX):
            raise InvalidFilter(
                f"{_RUN_ID_EXPECTED} (lower-case hexadecimal digits, hyphens where a UUID has them), got {_show(text)}",
                literal.position,
            )
    if prefix:
        return Prefix(part)
    if suffix:
        return Suffix(part)
    if len(part) != RUN_ID_LENGTH:
        raise InvalidFilter(
            f'{_show(text)} is not a whole run id ({RUN_ID_LENGTH} characters): write "{part}*" for the runs whose id '
            f'starts with it, or "*{part}" for those whose id ends with it',
            literal.position,
        )
    return part


def _status(literal: Literal) -> RunStatus:
    name = literal.text.removeprefix(STATUS_PREFIX)
    try:
        return RunStatus(name)
    except ValueError:
        valid = ", ".join(status.value for status in RunStatus)
        raise InvalidFilter(
            f"status must be one of {valid} (the {STATUS_PREFIX} prefix is optional), got {_show(literal.text)}",
            literal.position,
        ) from None


def _timestamp(spec: FieldSpec, literal: Literal) -> datetime:
    expected = f'{spec.name} expects an RFC 3339 timestamp with a timezone, such as "2026-01-01T00:00:00Z"'
    match = _TIMESTAMP.fullmatch(literal.text)
    if match is None:
        raise InvalidFilter(f"{expected}, got {_show(literal.text)}", literal.position)
    year, month, day, hour, minute, second, fraction, zulu, sign, off_hours, off_minutes = match.groups()
    try:
        offset = timedelta(0)
        if not zulu:
            offset = timedelta(hours=int(off_hours), minutes=int(off_minutes)) * (-1 if sign == "-" else 1)
        value = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second),
            int((fraction or "0")[:6].ljust(6, "0")),
            tzinfo=timezone(offset),
        )
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidFilter(
            f"{expected}; {_show(literal.text)} is not a valid date and time", literal.position
        ) from None


def _duration(spec: FieldSpec, literal: Literal) -> timedelta:
    match = _DURATION.fullmatch(literal.text)
    if match is None:
        raise InvalidFilter(
            f"{spec.name} expects a duration such as 30s, 1.5s, 250ms, 2m or 1h (a bare number is seconds), "
            f"got {_show(literal.text)}",
            literal.position,
        )
    number, unit = match.groups()
    if len(number) > MAX_DECIMAL_DIGITS:
        raise InvalidFilter(f"{spec.name}: {_show(literal.text)} is too large", literal.position)
    with localcontext(prec=2 * MAX_DECIMAL_DIGITS):  # exact: the default 28 digits would round
        microseconds = Decimal(number) * _MICROSECONDS_PER_UNIT[unit or "s"]
    if microseconds != microseconds.to_integral_value():
        raise InvalidFilter(f"{spec.name}: {_show(literal.text)} is finer than a microsecond", literal.position)
    if microseconds > INT64_MAX:
        raise InvalidFilter(f"{spec.name}: {_show(literal.text)} is too large", literal.position)
    return timedelta(microseconds=int(microseconds))


def _integer(spec: FieldSpec, literal: Literal) -> int:
    if not _INTEGER.fullmatch(literal.text):
        raise InvalidFilter(f"{spec.name} expects an integer, got {_show(literal.text)}", literal.position)
    largest = 2 ** (spec.integer_bits - 1) - 1
    if len(literal.text) > 20 or not -largest - 1 <= int(literal.text) <= largest:
        raise InvalidFilter(
            f"{spec.name}: {literal.text} is outside the {spec.integer_bits}-bit integer range "
            f"({-largest - 1} to {largest})",
            literal.position,
        )
    return int(literal.text)


def _decimal(spec: FieldSpec, literal: Literal) -> Decimal:
    if not _DECIMAL.fullmatch(literal.text):
        raise InvalidFilter(
            f"{spec.name} expects a decimal number such as 0.25, got {_show(literal.text)}", literal.position
        )
    if sum(char.isdigit() for char in literal.text) > MAX_DECIMAL_DIGITS:
        raise InvalidFilter(f"{spec.name}: {literal.text} has more than {MAX_DECIMAL_DIGITS} digits", literal.position)
    return Decimal(literal.text)


def _show(text: str) -> str:
    """`text` in double quotes for an error message, shortened when long."""
    text = cut(text, 40)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
