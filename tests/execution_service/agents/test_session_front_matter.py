"""The `session` front matter key."""

from __future__ import annotations

import pytest

from execution_service.agents.errors import InvalidField
from execution_service.agents.session import parse_session
from execution_service.agents.spec import SessionSettings


def test_session_settings_default_and_given() -> None:
    assert parse_session(None) == SessionSettings(history_tokens=32_000)
    assert parse_session({"history_tokens": 500}) == SessionSettings(history_tokens=500)


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        ("lots", "session", "must be a mapping with keys history_tokens"),
        ({"history_token": 5}, "session.history_token", "unknown session setting"),
        ({"history_tokens": "5"}, "session.history_tokens", "must be a whole number >= 1, got '5'"),
        ({"history_tokens": True}, "session.history_tokens", "must be a whole number"),
        ({"history_tokens": 0}, "session.history_tokens", "must be between 1 and 2147483647, got 0"),
    ],
)
def test_bad_session_settings_name_the_key(raw: object, key: str, message: str) -> None:
    with pytest.raises(InvalidField) as caught:
        parse_session(raw)
    assert caught.value.key == key and message in caught.value.message
