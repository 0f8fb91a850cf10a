"""Property tests: any text fails only with InvalidFilter, and generated valid filters select on SQLite and
PostgreSQL exactly the runs a plain-Python reference evaluation of the same filter selects."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runs_service.errors import InvalidFilter
from runs_service.query.filter import compile_filter, normalise_filter
from runs_service.storage.tables import runs
from tests.runs_service.query.filter_db import ALL_IDS, RUNS, TABLES, select_ids

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

FRAGMENTS = [
    *"()=<>!*-.\"'\\:;%_ \t",
    "!=", "<=", ">=", "AND", "OR", "NOT", "and", "agent_name", "user", "status", "start_time", "duration",
    "total_tokens", "cost", "labels.env", "labels.", "tool", "COMPLETED", "RUN_STATUS_FAILED", "30s", "1.5",
    "-7", "web-*", '"2026-01-01T00:00:00Z"', '"x"', "'y*'", "9" * 25, "é", "\x00",
]  # fmt: skip


def _execute(engine: sa.Engine, text: str) -> None:
    condition = compile_filter(text, TABLES)
    if condition is not None:
        with engine.connect() as conn:
            conn.execute(sa.select(runs.c.id).where(condition)).all()


@FUZZ
@given(text=st.text(max_size=80) | st.lists(st.sampled_from(FRAGMENTS), max_size=25).map(" ".join))
def test_any_text_is_a_filter_or_an_invalid_filter(sqlite_db: sa.Engine, text: str) -> None:
    try:
        _execute(sqlite_db, text)
    except InvalidFilter as error:
        assert 0 <= error.position <= len(text)
        assert error.reason == "INVALID_FILTER"


# --- generated valid filters with a reference evaluation ----------------------------------------------------

Row = tuple[Any, ...]  # a RUNS value: agent, model, user, status, start, duration_us, tokens, cost, labels, tools


@dataclass(frozen=True)
class Case:
    text: str
    level: int  # 0: OR, 1: AND, 2: NOT or a comparison (binds tightest)
    matches: Callable[[Row], bool]


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped[:-1]}\\*"' if escaped.endswith("*") else f'"{escaped}"'


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if actual is None:
        return op == "!="
    return _OPS[op](actual, expected)


_STRING_FIELDS: dict[str, Callable[[Row], str | None]] = {
    "agent_name": lambda row: row[0],
    "model_name": lambda row: row[1],
    "user": lambda row: row[2],
    "labels.env": lambda row: row[8].get("env"),
    "labels.team": lambda row: row[8].get("team"),
    "labels.missing": lambda row: row[8].get("missing"),
}
_DATA_STRINGS = sorted({str(value) for row in RUNS.values() for value in (*row[:3], *row[8].values(), *row[9])})
_text_values = st.sampled_from(_DATA_STRINGS) | st.text(alphabet="ab%_'\"\\*/-. é", max_size=6)


@st.composite
def string_comparisons(draw: st.DrawFn) -> Case:
    value = draw(_text_values)
    prefix = draw(st.booleans())
    if draw(st.booleans()):
        op = "="
        if prefix:
            value = value[: draw(st.integers(0, len(value)))]
        text = _quote(value)[:-1] + '*"' if prefix else _quote(value)
        return Case(f"tool = {text}", 2, lambda row: any(_str_match(name, "=", value, prefix) for name in row[9]))
    field = draw(st.sampled_from(sorted(_STRING_FIELDS)))
    op = "=" if prefix else draw(st.sampled_from(["=", "!="]))
    if prefix:
        value = value[: draw(st.integers(0, len(value)))]
        text = _quote(value)[:-1] + '*"'
    else:
        text = _quote(value)
    get = _STRING_FIELDS[field]
    if prefix and not value and not field.startswith("labels."):
        # `field = "*"` alone: the runs that have a value (a label's: the runs that have the label).
        return Case(f"{field} {op} {text}", 2, lambda row: bool(get(row)))
    return Case(f"{field} {op} {text}", 2, lambda row: _str_match(get(row), op, value, prefix))


def _str_match(actual: str | None, op: str, value: str, prefix: bool) -> bool:
    if prefix:
        return actual is not None and actual.startswith(value)
    return _compare(actual, op, value)


@st.composite
def typed_comparisons(draw: st.DrawFn) -> Case:
    kind = draw(st.sampled_from(["status", "start_time", "duration", "total_tokens", "cost"]))
    if kind == "status":
        op = draw(st.sampled_from(["=", "!="]))
        status = draw(st.sampled_from(["RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT", "INTERRUPTED"]))
        spelled = draw(st.sampled_from([status, f"RUN_STATUS_{status}", f'"{status}"']))
        return Case(f"status {op} {spelled}", 2, lambda row: _compare(row[3], op, status))
    op = draw(st.sampled_from(sorted(_OPS)))
    if kind == "start_time":
        base = draw(st.sampled_from([row[4] for row in RUNS.values()]))
        moment = base + timedelta(microseconds=draw(st.sampled_from([0, 0, 1, -1, 500_000, -3_600_000_000])))
        zone = timezone(timedelta(minutes=draw(st.sampled_from([0, 60, -330, 840]))))
        shown = moment.astimezone(zone).isoformat()
        return Case(f'start_time {op} "{shown}"', 2, lambda row: _compare(row[4], op, moment))
    if kind == "duration":
        micros = draw(st.sampled_from([row[5] or 0 for row in RUNS.values()]) | st.integers(0, 10**9))
        micros += draw(st.sampled_from([0, 0, 1, -1])) if micros > 0 else 0
        shown = draw(st.sampled_from([f"{micros}us", f"{Decimal(micros).scaleb(-6):f}s", f'"{micros / 10**6:f}"']))
        if not shown.startswith('"'):
            return Case(f"duration {op} {shown}", 2, lambda row: _compare(row[5], op, micros))
        micros_shown = int(Decimal(shown.strip('"')) * 10**6)
        return Case(f"duration {op} {shown}", 2, lambda row: _compare(row[5], op, micros_shown))
    if kind == "total_tokens":
        tokens = draw(st.sampled_from([row[6] for row in RUNS.values()]) | st.integers(-(2**63), 2**63 - 1))
        return Case(f"total_tokens {op} {tokens}", 2, lambda row: _compare(row[6], op, tokens))
    cost = draw(
        st.sampled_from([row[7] for row in RUNS.values() if row[7] is not None])
        | st.decimals(min_value=-10, max_value=10, places=10, allow_nan=False, allow_infinity=False)
    )
    return Case(f"cost {op} {cost:f}", 2, lambda row: _compare(row[7], op, cost))


def _combine(children: st.SearchStrategy[Case]) -> st.SearchStrategy[Case]:
    def wrap(case: Case, level: int) -> str:
        return f"({case.text})" if case.level < level else case.text

    def both(a: Case, b: Case, keyword: str) -> Case:
        if keyword == "AND":
            return Case(f"{wrap(a, 1)} AND {wrap(b, 1)}", 1, lambda row: a.matches(row) and b.matches(row))
        return Case(f"{a.text} OR {b.text}", 0, lambda row: a.matches(row) or b.matches(row))

    return st.one_of(
        st.tuples(children, children, st.sampled_from(["AND", "OR"])).map(lambda t: both(*t)),
        children.map(lambda c: Case(f"NOT {wrap(c, 2)}", 2, lambda row: not c.matches(row))),
        children.map(lambda c: Case(f"( {c.text} )", 2, c.matches)),
    )


filters = st.recursive(string_comparisons() | typed_comparisons(), _combine, max_leaves=8)


def _reference(case: Case) -> frozenset[str]:
    return frozenset(run_id for run_id, row in RUNS.items() if case.matches(row))


@FUZZ
@given(case=filters)
def test_generated_filters_select_what_the_reference_selects(db: sa.Engine, case: Case) -> None:
    expected = _reference(case)
    assert select_ids(db, case.text) == expected, case.text
    canonical = normalise_filter(case.text)
    assert normalise_filter(canonical) == canonical
    assert select_ids(db, canonical) == expected, canonical
    assert select_ids(db, f"NOT ({case.text})") == ALL_IDS - expected
