"""Building ListRuns filters and parsing option values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentrun_cli.commands.runs import list_request
from agentrun_cli.errors import CliError
from agentrun_cli.filters import FilterValueError, build_filter, quote, status_enum_name
from agentrun_cli.params import ParamError, parse_pairs, parse_since, time_range


def test_quote_escapes_backslashes_and_quotes() -> None:
    assert quote("clock") == '"clock"'
    assert quote('say "hi"') == '"say \\"hi\\""'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote('\\"') == '"\\\\\\""'


def test_shortcuts_are_joined_with_and() -> None:
    assert build_filter(agent="clock") == 'agent_name = "clock"'
    assert (
        build_filter("total_tokens > 1000", agent="clock", status="failed", user='o\'brien "bob"')
        == 'total_tokens > 1000 AND agent_name = "clock" AND status = RUN_STATUS_FAILED AND user = "o\'brien \\"bob\\""'
    )
    assert build_filter() == ""


def test_an_expression_with_or_is_parenthesised() -> None:
    assert build_filter("status = FAILED OR status = TIMED_OUT", agent="clock") == (
        '(status = FAILED OR status = TIMED_OUT) AND agent_name = "clock"'
    )
    assert build_filter("status = FAILED OR status = TIMED_OUT") == "(status = FAILED OR status = TIMED_OUT)"
    assert build_filter('agent_name = "ORACLE"', user="u") == 'agent_name = "ORACLE" AND user = "u"'


@pytest.mark.parametrize("value", ["failed", "FAILED", "RUN_STATUS_FAILED", " Failed "])
def test_status_names(value: str) -> None:
    assert status_enum_name(value) == "RUN_STATUS_FAILED"
    assert status_enum_name("timed-out") == "RUN_STATUS_TIMED_OUT"


def test_unknown_status_lists_the_choices() -> None:
    with pytest.raises(FilterValueError, match="one of running, completed, failed"):
        status_enum_name("done")
    with pytest.raises(FilterValueError):
        status_enum_name("unspecified")


def test_list_request() -> None:
    request = list_request("", "clock", "completed", None, "start_time desc", 5, "tok")
    assert request.filter == 'agent_name = "clock" AND status = RUN_STATUS_COMPLETED'
    assert (request.order_by, request.page_size, request.page_token) == ("start_time desc", 5, "tok")
    with pytest.raises(CliError) as info:
        list_request("", None, "nope", None, None, 5, None)
    assert info.value.exit_code == 2


def test_pairs() -> None:
    assert parse_pairs(["city=Paris", "q=a=b", "empty="], "--var") == {"city": "Paris", "q": "a=b", "empty": ""}
    assert parse_pairs(None, "--var") == {}
    with pytest.raises(ParamError, match="--label expects KEY=VALUE"):
        parse_pairs(["novalue"], "--label")


def test_time_ranges() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert parse_since("90m") == timedelta(minutes=90)
    assert time_range(None, None, None, now=now) == (now - timedelta(days=7), now)
    assert time_range("2w", None, None, now=now) == (now - timedelta(weeks=2), now)
    begin, end = time_range(None, "2026-11-01", "2026-11-02T00:00:00+01:00", now=now)
    assert begin == datetime(2026, 11, 1, tzinfo=UTC)
    assert end == datetime(2026, 11, 1, 23, 0, tzinfo=UTC)
    bad = [("7d", "2026-11-01", None), (None, None, "2026-11-01"), (None, "2026-11-02", "2026-11-01")]
    for since, start, stop in bad:
        with pytest.raises(ParamError):
            time_range(since, start, stop, now=now)
    with pytest.raises(ParamError):
        parse_since("7 days")
