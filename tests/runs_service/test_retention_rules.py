"""Retention settings: periods, rules and their errors (what wins when rules overlap: tests/runs_service/api)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentrun_core.settings import SettingsError
from runs_service.config import RunsSettings
from runs_service.retention import RetentionPolicy, RuleKind, parse_period, parse_rules


def test_periods() -> None:
    assert parse_period("30d") == timedelta(days=30)
    assert parse_period(" 12h ") == timedelta(hours=12)
    assert parse_period("2w") == timedelta(weeks=2)
    assert parse_period("1.5d") == timedelta(hours=36)
    assert parse_period("forever") is None
    assert parse_period("FOREVER") is None
    for bad in ("30", "30 days", "-1d", "0d", "30s", "1y"):
        with pytest.raises(ValueError, match="must be"):
            parse_period(bad)
        with pytest.raises(SettingsError) as caught:
            RunsSettings.from_env({"AGENTRUN_RETENTION": bad})
        assert str(caught.value).startswith("AGENTRUN_RETENTION must be"), str(caught.value)
    assert RunsSettings.from_env({"AGENTRUN_RETENTION": ""}).retention_period is None  # empty is unset: forever


def test_rules_parse_with_prefixes_and_values_holding_equals_signs() -> None:
    rules = parse_rules("agent:web-search=7d; agent:batch-*=90d\nlabel:env=dev=1d;label:query=a=b=forever;  ")
    assert [(r.kind, r.key, r.value, r.period) for r in rules] == [
        (RuleKind.AGENT, "", "web-search", timedelta(days=7)),
        (RuleKind.AGENT, "", "batch-*", timedelta(days=90)),
        (RuleKind.LABEL, "env", "dev", timedelta(days=1)),
        (RuleKind.LABEL, "query", "a=b", None),
    ]
    assert [r.filter for r in rules] == [
        'agent_name = "web-search"',
        'agent_name = "batch-*"',
        'labels.env = "dev"',
        'labels.query = "a=b"',
    ]
    assert parse_rules("") == ()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("agent=7d", "expected agent:NAME=PERIOD"),
        ("user:bob=7d", "expected agent:NAME=PERIOD"),
        ("agent:=7d", "agent name is empty"),
        ("agent:x=soon", "whose period must be a number and a unit (s, m, h, d, w) such as 30d"),
        ("label:env=7d", "expected KEY=VALUE"),
        ("label:bad key=x=7d", "label key"),
    ],
)
def test_bad_rules_name_the_setting_and_the_rule(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match="has the rule"):
        parse_rules(f"agent:fine=1d; {text}")
    with pytest.raises(SettingsError) as caught:
        RunsSettings.from_env({"AGENTRUN_RETENTION_RULES": f"agent:fine=1d; {text}"})
    message = str(caught.value)
    assert message.startswith(f"AGENTRUN_RETENTION_RULES has the rule {text!r}") and fragment in message, message


def test_settings_read_retention_from_the_environment() -> None:
    environ = {
        "AGENTRUN_RETENTION": "30d",
        "AGENTRUN_RETENTION_RULES": "label:env=dev=1d",
        "AGENTRUN_RETENTION_BATCH_SIZE": "300",
    }
    settings = RunsSettings.from_env(environ)
    assert settings.retention.default == timedelta(days=30)
    assert settings.retention.describe() == "default 30d; rules label:env=dev=1d"
    assert (settings.retention_batch_size, settings.retention_duty) == (300, 0.1)
    for name, bad in (("AGENTRUN_RETENTION_DUTY", "2"), ("AGENTRUN_RETENTION_DUTY", "0"), ("AGENTRUN_RETENTION", "x")):
        with pytest.raises(SettingsError) as caught:
            RunsSettings.from_env({**environ, name: bad})
        assert str(caught.value).startswith(name), str(caught.value)


def test_keep_forever_by_default_plans_nothing() -> None:
    policy = RetentionPolicy()
    assert not policy.deletes_anything and policy.plans(datetime.now(UTC)) == []
    only_forever = RetentionPolicy(rules=parse_rules("agent:x=forever"))
    assert not only_forever.deletes_anything and only_forever.plans(datetime.now(UTC)) == []
