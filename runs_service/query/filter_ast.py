"""The parsed ListRuns filter: a small tree of frozen dataclasses with typed, checked values.

`runs_service.query.filter_parser` builds it, `runs_service.query.filter` compiles it to SQLAlchemy and
`runs_service.query.filter_render` writes it back as canonical text. Values are already converted to the field's
type, so a tree is always valid against the allow-list in `runs_service.query.filter_fields`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from agentrun_core.domain import RunStatus


class Op(enum.StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="


@dataclass(frozen=True, slots=True)
class Prefix:
    """A string value written with a trailing unescaped `*`: matches values that start with `text`."""

    text: str


@dataclass(frozen=True, slots=True)
class Suffix:
    """A run id value written with a leading `*` (`id = "*2e3f4a5b"`): matches ids that end with `text`."""

    text: str


# RunStatus before str when matching: it is a StrEnum.
Value = RunStatus | Prefix | Suffix | str | int | Decimal | datetime | timedelta


@dataclass(frozen=True, slots=True)
class Comparison:
    """`field op value`; `field` as written (e.g. "labels.env"), `position` is where the field name starts."""

    field: str
    op: Op
    value: Value
    position: int


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


Expr = Comparison | And | Or | Not
