"""Retention settings: periods, rules and their errors (what wins when rules overlap: tests/runs_service/api)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentrun_core.settings import SettingsError
from runs_service.config import RunsSettings
from runs_service.retention import RetentionPolicy, RuleKind, parse_period, parse_rules


def test_periods() -> None:
    assert parse_period("30d", "X") == timedelta(days=30)
    assert parse_period(" 12h ", "X") == timedelta(hours=12)
    assert parse_period("2w", "X") == timedelta(weeks=2)
    assert parse_period("1.5d", "X") == timedelta(hours=36)
    assert parse_period("forever", "X") is None
    assert parse_period("FOREVER", "X") is None
    for bad in ("30", "30 days", "-1d", "0d", "30s", "", "1y"):
        with pytest.raises(SettingsError) as caught:
            parse_period(bad, "AGENTRUN_RETENTION")
        assert "AGENTRUN_RETENTION" in str(caught.value)


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
        ("agent:x=soon", "expected a period"),
        ("label:env=7d", "expected KEY=VALUE"),
        ("label:bad key=x=7d", "label key"),
    ],
)
def test_bad_rules_name_the_setting(text: str, fragment: str) -> None:
    with pytest.raises(SettingsError) as caught:
        parse_rules(text)
    assert "AGENTRUN_RETENTION_RULES" in str(caught.value) and fragment in str(caught.value), str(caught.value)


def test_settings_read_retention_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRUN_RETENTION", "30d")
    monkeypatch.setenv("AGENTRUN_RETENTION_RULES", "label:env=dev=1d")
    monkeypatch.setenv("AGENTRUN_RETENTION_BATCH_SIZE", "200")
    settings = RunsSettings.from_env()
    assert settings.retention.default == timedelta(days=30)
    assert settings.retention.describe() == "default 30d; rules label:env=dev=1d"
    assert settings.retention_batch_size == 200
    assert settings.retention_duty == 0.1
    monkeypatch.setenv("AGENTRUN_RETENTION_DUTY", "2")
    with pytest.raises(SettingsError) as caught:
        RunsSettings.from_env()
    assert "AGENTRUN_RETENTION_DUTY" in str(caught.value)
    monkeypatch.setenv("AGENTRUN_RETENTION_DUTY", "0.5")
    monkeypatch.setenv("AGENTRUN_RETENTION", "a month")
    with pytest.raises(SettingsError):
        RunsSettings.from_env()


def test_keep_forever_by_default_plans_nothing() -> None:
    policy = RetentionPolicy()
    assert not policy.deletes_anything and policy.plans(datetime.now(UTC)) == []
    only_forever = RetentionPolicy(rules=parse_rules("agent:x=forever"))
    assert not only_forever.deletes_anything and only_forever.plans(datetime.now(UTC)) == []
