"""The filter language without a database: the trees it builds, its errors and their positions, normalisation."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from agentrun_core.domain import RunStatus
from runs_service.errors import InvalidArgument, InvalidFilter
from runs_service.query.filter import normalise_filter
from runs_service.query.filter_ast import Prefix
from runs_service.query.filter_parser import And, Comparison, Expr, Not, Op, Or, parse_filter


def cmp(field: str, op: str, value: object, position: int) -> Comparison:
    return Comparison(field, Op(op), value, position)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "   ", "\t\n "])
def test_an_empty_filter_is_no_filter(text: str) -> None:
    assert parse_filter(text) is None
    assert normalise_filter(text) == ""


def test_precedence_is_not_then_and_then_or() -> None:
    assert parse_filter("user = a OR user = b AND NOT user = c") == Or(
        (cmp("user", "=", "a", 0), And((cmp("user", "=", "b", 12), Not(cmp("user", "=", "c", 29)))))
    )


def test_parentheses_override_precedence_and_chains_are_flat() -> None:
    assert parse_filter("(user = a OR user = b) AND cost > 1 AND cost < 2") == And(
        (
            Or((cmp("user", "=", "a", 1), cmp("user", "=", "b", 13))),
            cmp("cost", ">", Decimal(1), 27),
            cmp("cost", "<", Decimal(2), 40),
        )
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('agent_name = "web"', "web"),
        ("agent_name = web", "web"),
        ("agent_name = 'it''s'", None),  # two adjacent strings: an error, checked below
        (r'agent_name = "say \"hi\" \\ o\'k"', 'say "hi" \\ o\'k'),
        (r"agent_name = 'a\'b\"c'", "a'b\"c"),
        ('agent_name = "web-*"', Prefix("web-")),
        ("agent_name = web-*", Prefix("web-")),
        (r'agent_name = "web-\*"', "web-*"),
        ('agent_name = "a*b"', "a*b"),
        ('agent_name = "*"', Prefix("")),
        ('agent_name = ""', ""),
        ("status = COMPLETED", RunStatus.COMPLETED),
        ("status = RUN_STATUS_FAILED", RunStatus.FAILED),
        ('status = "TIMED_OUT"', RunStatus.TIMED_OUT),
        ('start_time > "2026-01-01T00:00:00Z"', datetime(2026, 1, 1, tzinfo=UTC)),
        ('start_time > "2026-01-01t02:30:00.25+02:30"', datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)),
        ('start_time > "2026-01-01 00:00:00.1234567-01:00"', datetime(2026, 1, 1, 1, 0, 0, 123_456, tzinfo=UTC)),
        ("duration > 30s", timedelta(seconds=30)),
        ("duration > 1.5s", timedelta(seconds=1.5)),
        ("duration > 250ms", timedelta(milliseconds=250)),
        ("duration > 2m", timedelta(minutes=2)),
        ("duration > 1h", timedelta(hours=1)),
        ("duration > 7us", timedelta(microseconds=7)),
        ('duration > "45"', timedelta(seconds=45)),
        ("duration > 0.000001", timedelta(microseconds=1)),
        ("total_tokens > 1000", 1000),
        ("total_tokens > -1", -1),
        (f"total_tokens > {2**63 - 1}", 2**63 - 1),
        ("cost > 0.25", Decimal("0.25")),
        ("cost > -3", Decimal(-3)),
        ('labels.env = "prod"', "prod"),
        ("tool = get_time", "get_time"),
    ],
)
def test_values_are_converted_to_the_field_type(text: str, value: object) -> None:
    if value is None:
        with pytest.raises(InvalidFilter):
            parse_filter(text)
        return
    expr = parse_filter(text)
    assert isinstance(expr, Comparison)
    assert expr.value == value
    assert type(expr.value) is type(value)


def test_labels_keep_their_key_and_keys_may_contain_dots_dashes_and_slashes() -> None:
    assert parse_filter("labels.team.v2-x_y != ops") == cmp("labels.team.v2-x_y", "!=", "ops", 0)
    # Kubernetes-style keys, which RecordRun and ExecuteAgent accept, can be named.
    assert parse_filter('labels.app.kubernetes.io/name = "web"') == cmp("labels.app.kubernetes.io/name", "=", "web", 0)


ALLOWED = (
    "allowed fields: id, agent_name, model_name, user, status, start_time, duration, total_tokens, cost, session_id, "
    "parent_run_id, root_run_id, depth, labels.<key>, tool"
)

# (filter, 0-based position, words the message must contain)
INVALID: list[tuple[str, int, str]] = [
    ("foo = 1", 0, f"unknown field 'foo'; {ALLOWED}"),
    ("status = COMPLETED AND user_name = x", 23, "unknown field 'user_name'; did you mean user?"),
    ("agent = x", 0, "did you mean agent_name?"),
    ("labels = x", 0, "names its key, as in labels.env"),
    ("labels.a*b = x", 7, "invalid label key 'a*b'"),
    ("labels. = x", 7, "invalid label key ''"),
    ("labels.note = " + "n" * 257, 14, "the value of label 'note' is 257 characters, over the cap of 256: no run can"),
    ("labels.note = " + "n" * 258 + "*", 14, "the value of label 'note' is 258 characters"),
    ("total_tokens = abc", 15, 'total_tokens expects an integer, got "abc"'),
    ('total_tokens = "1.5"', 15, 'total_tokens expects an integer, got "1.5"'),
    ("total_tokens > 9223372036854775808", 15, "outside the 64-bit integer range"),
    # depth is a 32-bit column (PostgreSQL `integer`): a larger literal would fail the query, not the filter.
    ("depth > 2147483648", 8, "outside the 32-bit integer range (-2147483648 to 2147483647)"),
    ("depth < -2147483649", 8, "outside the 32-bit integer range"),
    ("cost < cheap", 7, 'cost expects a decimal number such as 0.25, got "cheap"'),
    ("cost < 1e3", 7, "cost expects a decimal number"),
    ("cost < " + "9" * 39, 7, "more than 38 digits"),
    (
        "duration > fast",
        11,
        'duration expects a duration such as 30s, 1.5s, 250ms, 2m or 1h (a bare number is seconds), got "fast"',
    ),
    ("duration > -1s", 11, "duration expects a duration"),
    ("duration > 0.5us", 11, "finer than a microsecond"),
    ("duration > 99999999999999h", 11, "too large"),
    ('start_time > "2026-01-01"', 13, "start_time expects an RFC 3339 timestamp with a timezone"),
    ('start_time > "2026-01-01T00:00:00"', 13, "with a timezone"),
    ('start_time > "2026-02-30T00:00:00Z"', 13, "is not a valid date and time"),
    ('start_time > "0001-01-01T00:00:00+01:00"', 13, "is not a valid date and time"),
    (
        "start_time > 2026-01-01T00:00:00Z",
        26,
        "unexpected character ':' (the ':' has-operator is not supported; write timestamps in quotes)",
    ),
    ("status = DONE", 9, "status must be one of RUNNING, COMPLETED, FAILED, CANCELLED, TIMED_OUT, INTERRUPTED"),
    ("status = completed", 9, 'got "completed"'),
    ("status = RUN_STATUS_UNSPECIFIED", 9, "status must be one of"),
    ('agent_name < "x"', 11, "operator < is not allowed for agent_name; use = or !="),
    ("status >= FAILED", 7, "operator >= is not allowed for status; use = or !="),
    ("labels.env > a", 11, "operator > is not allowed for labels.env"),
    ("tool != fetch", 5, 'operator != is not allowed for tool; use =; to exclude a tool write NOT tool = "name"'),
    ('agent_name != "web*"', 14, "a trailing * (prefix match) is only allowed with ="),
    ('agent_name = "web', 13, 'unterminated string: the " opened here is never closed'),
    ("agent_name = 'web\\'", 13, "unterminated string: the ' opened here"),
    ('agent_name = "a\\n"', 15, "unknown escape \\n in a string"),
    ('agent_name = "a\x00"', 15, "character U+0000 is not allowed in a string"),
    ("agent_name = x; DROP TABLE runs", 14, "unexpected character ';'"),
    ("agent_name ~ x", 11, "unexpected character '~'"),
    ("agent_name ! x", 11, "unexpected '!': the not-equal operator is '!=' and negation is NOT"),
    ("agent_name == x", 12, "expected a value after agent_name =, got '=' (equality is a single =)"),
    ("agent_name", 10, "expected an operator (= != < <= > >=) after agent_name, got end of input"),
    ("agent_name x", 11, "expected an operator (= != < <= > >=) after agent_name, got 'x'"),
    ("agent_name =", 12, "expected a value after agent_name =, got end of input"),
    ("agent_name = )", 13, "expected a value after agent_name =, got ')'"),
    ("agent_name = AND", 13, "expected a value after agent_name =, got 'AND'"),
    ('"agent_name" = x', 0, "field names are not quoted"),
    ("= x", 0, "expected a field name before '='"),
    (
        "user = a user = b",
        9,
        "expected AND, OR or end of input, got 'user' (terms must be joined with AND or OR; implicit AND",
    ),
    ("user = a and user = b", 9, "keywords are uppercase"),
    ("user = a AND", 12, 'expected a comparison such as agent_name = "x" after AND, got end of input'),
    ("user = a OR OR user = b", 12, "after OR, got 'OR'"),
    ("AND user = a", 0, "got 'AND'"),
    ("NOT", 3, "NOT must be followed by an expression, got end of input"),
    ("user = a AND NOT", 16, "NOT must be followed by an expression"),
    ("(NOT) OR user = a", 4, "NOT must be followed by an expression, got ')'"),
    ("NOT AND user = a", 4, "NOT must be followed by an expression, got 'AND'"),
    ("(user = a", 9, "missing ')' to close the '(' at position 0"),
    ("((user = a) OR (user = b)", 25, "missing ')' to close the '(' at position 0"),
    ("(user = a user = b)", 10, "expected AND, OR or ')', got 'user'"),
    ("user = a)", 8, "unexpected ')': there is no '(' for it to close"),
    (")", 0, "unexpected ')'"),
    ("()", 1, "empty parentheses are not allowed"),
    ("-user = a", 0, "negation is written NOT"),
    ("(" * 65 + "user = a" + ")" * 65, 64, "nested too deeply: more than 64 levels"),
    ("NOT " * 65 + "user = a", 256, "nested too deeply"),
    ("user = " + "a" * 4090, 4096, "filter is 4097 characters long; the limit is 4096"),
]


@pytest.mark.parametrize(("text", "position", "message"), INVALID, ids=[case[0][:40] for case in INVALID])
def test_invalid_filters_name_the_problem_and_its_position(text: str, position: int, message: str) -> None:
    with pytest.raises(InvalidFilter) as raised:
        parse_filter(text)
    error = raised.value
    assert error.position == position
    assert message in error.message
    assert error.message.endswith(f"(at position {position})")
    assert isinstance(error, InvalidArgument)
    assert error.reason == "INVALID_FILTER"
    assert error.field == "filter"


def test_nesting_and_length_limits_are_inclusive() -> None:
    assert parse_filter("(" * 64 + "user = a" + ")" * 64) == cmp("user", "=", "a", 64)
    assert parse_filter("NOT " * 64 + "user = a") is not None
    assert parse_filter("user = " + "a" * 4089) is not None


def test_long_chains_do_not_nest() -> None:
    text = " AND ".join(["total_tokens > 1"] * 150)
    expr = parse_filter(text)
    assert isinstance(expr, And)
    assert len(expr.operands) == 150


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("  agent_name='web-*'   AND\n status=RUN_STATUS_COMPLETED ", 'agent_name = "web-*" AND status = COMPLETED'),
        ("((user = a))", 'user = "a"'),
        (
            "(user = a OR user = b) AND NOT (cost > 1.50 AND cost < 2)",
            '(user = "a" OR user = "b") AND NOT (cost > 1.5 AND cost < 2)',
        ),
        ("user = a OR (user = b AND user = c)", 'user = "a" OR user = "b" AND user = "c"'),
        ('start_time >= "2026-01-01T02:00:00+02:00"', 'start_time >= "2026-01-01T00:00:00.000000Z"'),
        ("duration > 1500ms", "duration > 1.5s"),
        ("duration > 2m", "duration > 120s"),
        ("duration > 0", "duration > 0s"),
        ("cost > 10.000", "cost > 10"),
        ("cost > -0.0", "cost > 0"),
        (r"agent_name = 'it\'s \"x\" \\ \*'", r'agent_name = "it' + "'" + r's \"x\" \\ \*"'),
        ("NOT NOT tool = t", 'NOT NOT tool = "t"'),
    ],
)
def test_normalise_gives_one_spelling_per_meaning(text: str, canonical: str) -> None:
    assert normalise_filter(text) == canonical
    assert normalise_filter(canonical) == canonical
    assert without_positions(parse_filter(canonical)) == without_positions(parse_filter(text))


def without_positions(expr: Expr | None) -> Expr | None:
    match expr:
        case Comparison():
            return dataclasses.replace(expr, position=0)
        case And(operands=operands):
            return And(tuple(without_positions(o) for o in operands))  # type: ignore[misc]
        case Or(operands=operands):
            return Or(tuple(without_positions(o) for o in operands))  # type: ignore[misc]
        case Not(operand=operand):
            return Not(without_positions(operand))  # type: ignore[arg-type]
        case _:
            return expr


def test_normalise_rejects_what_parse_rejects() -> None:
    with pytest.raises(InvalidFilter):
        normalise_filter("user = ")
