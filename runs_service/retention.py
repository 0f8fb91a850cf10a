"""Retention: how long runs are kept, globally and per agent or label, and which runs are expired at a given time.

Settings (docs/configuration.md): `AGENTRUN_RETENTION` is the default period (`30d`, `12h`, `2w`... or `forever`,
the default) and `AGENTRUN_RETENTION_RULES` overrides it for some runs, rules separated by `;` or newlines:

    agent:web-search=7d; agent:batch-*=90d; label:env=dev=1d; label:legal_hold=true=forever

`agent:NAME=PERIOD` applies to runs of that agent, `label:KEY=VALUE=PERIOD` to runs carrying that label (the last
`=` separates the period). A trailing `*` makes NAME or VALUE a prefix (`label:env=*` matches any run that has an
`env` label), exactly as in the filter language, which the rules are compiled to.

Which period applies to a run when several match (most specific kind first, then the longest period):
1. the label rules that match it, if any: the longest of their periods (`forever` is the longest);
2. otherwise the agent rules that match it, if any: the longest of their periods;
3. otherwise the default.
So a label rule can shorten or lengthen what its agent's rule says (`label:pii=true=7d` under an agent kept 90
days), and among rules of one kind, keeping wins over deleting. A run expires `period` after its start_time; RUNNING
and QUEUED runs never expire.

`RetentionPolicy.plans(now)` turns this into one filter per finite period, each selecting exactly the expired runs
that period governs; runs_service.purger deletes them in the background.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_settings import NoDecode

from agentrun_core import periods
from agentrun_core.labels import label_key_problem

RETENTION_ENV = "AGENTRUN_RETENTION"
RULES_ENV = "AGENTRUN_RETENTION_RULES"
FOREVER = "forever"
MIN_PERIOD = timedelta(minutes=1)


class RuleKind(enum.StrEnum):
    AGENT = "agent"
    LABEL = "label"


def parse_period(text: str) -> timedelta | None:
    """`30d` -> 30 days (agentrun_core.periods); `forever` -> None. ValueError saying what a period looks like."""
    if text.strip().lower() == FOREVER:
        return None
    try:
        period = periods.parse_period(text)
    except ValueError as exc:
        raise ValueError(f"{exc}, or 'forever'") from None
    if period < MIN_PERIOD:
        raise ValueError("must be a retention period of at least 1 minute")
    return period


def format_period(period: timedelta | None) -> str:
    return FOREVER if period is None else periods.format_period(period)


def _quote(value: str) -> str:
    """A filter string literal; a trailing `*` stays a prefix marker."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@dataclass(frozen=True, slots=True)
class RetentionRule:
    kind: RuleKind
    # The agent name or the label value (a trailing * is a prefix); `key` is the label key.
    value: str
    period: timedelta | None
    key: str = ""

    @property
    def filter(self) -> str:
        """The runs this rule applies to, in the filter language."""
        if self.kind is RuleKind.AGENT:
            return f"agent_name = {_quote(self.value)}"
        return f"labels.{self.key} = {_quote(self.value)}"

    def describe(self) -> str:
        selector = self.value if self.kind is RuleKind.AGENT else f"{self.key}={self.value}"
        return f"{self.kind.value}:{selector}={format_period(self.period)}"

    def outlives(self, other: RetentionRule) -> bool:
        """This rule keeps runs longer than `other` does."""
        if self.period is None:
            return other.period is not None
        return other.period is not None and self.period > other.period


def parse_rule(text: str) -> RetentionRule:
    """One rule; ValueError naming the rule and what is wrong with it."""
    rule = text.strip()
    kind_text, sep, rest = rule.partition(":")
    selector, sep2, period_text = rest.rpartition("=")
    if not sep or not sep2 or kind_text.strip() not in ("agent", "label"):
        raise ValueError(f"has the rule {rule!r}: expected agent:NAME=PERIOD or label:KEY=VALUE=PERIOD")
    try:
        period = parse_period(period_text)
    except ValueError as exc:
        raise ValueError(f"has the rule {rule!r}, whose period {exc}") from None
    if kind_text.strip() == "agent":
        name = selector.strip()
        if not name:
            raise ValueError(f"has the rule {rule!r}, whose agent name is empty")
        return RetentionRule(RuleKind.AGENT, name, period)
    key, sep3, value = selector.partition("=")
    key = key.strip()
    problem = label_key_problem(key) if sep3 else "expected KEY=VALUE after label:"
    if problem is not None:
        raise ValueError(f"has the rule {rule!r}: {problem}")
    return RetentionRule(RuleKind.LABEL, value.strip(), period, key=key)


def parse_rules(text: str) -> tuple[RetentionRule, ...]:
    """Rules separated by `;` or newlines (blank entries ignored)."""
    return tuple(parse_rule(part) for part in re.split(r"[;\n]", text) if part.strip())


def _period_value(value: Any) -> Any:
    return parse_period(value) if isinstance(value, str) else value


def _rules_value(value: Any) -> Any:
    return parse_rules(value) if isinstance(value, str) else value


# AGENTRUN_RETENTION as a settings field: a period, or None for forever.
RetentionPeriod = Annotated[timedelta | None, BeforeValidator(_period_value)]
# AGENTRUN_RETENTION_RULES as a settings field (NoDecode: the text is parsed here, not as JSON).
RetentionRules = Annotated[tuple[RetentionRule, ...], NoDecode, BeforeValidator(_rules_value)]


@dataclass(frozen=True, slots=True)
class PurgePlan:
    """Runs governed by one finite period: `filter` (the filter language) selects them, and those that started
    before `cutoff` are expired."""

    description: str
    filter: str
    cutoff: datetime


def _any(rules: list[RetentionRule]) -> str:
    return " OR ".join(f"({rule.filter})" for rule in rules)


def _and_not(positive: str, excluded: list[RetentionRule]) -> str:
    if not excluded:
        return positive
    negation = f"NOT ({_any(excluded)})"
    return negation if not positive else f"({positive}) AND {negation}"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    default: timedelta | None = None
    rules: tuple[RetentionRule, ...] = ()

    @property
    def deletes_anything(self) -> bool:
        return self.default is not None or any(rule.period is not None for rule in self.rules)

    def describe(self) -> str:
        rules = "; ".join(rule.describe() for rule in self.rules)
        return f"default {format_period(self.default)}" + (f"; rules {rules}" if rules else "")

    def plans(self, now: datetime) -> list[PurgePlan]:
        """One plan per finite-period rule and the default, each selecting exactly the runs that period governs
        (the precedence in the module docstring)."""
        labels = [r for r in self.rules if r.kind is RuleKind.LABEL]
        agents = [r for r in self.rules if r.kind is RuleKind.AGENT]
        plans = []
        for rule in labels:
            if rule.period is not None:
                longer = [other for other in labels if other.outlives(rule)]
                plans.append(PurgePlan(rule.describe(), _and_not(rule.filter, longer), now - rule.period))
        for rule in agents:
            if rule.period is not None:
                overriding = labels + [other for other in agents if other.outlives(rule)]
                plans.append(PurgePlan(rule.describe(), _and_not(rule.filter, overriding), now - rule.period))
        if self.default is not None:
            plans.append(
                PurgePlan(f"default={format_period(self.default)}", _and_not("", labels + agents), now - self.default)
            )
        return plans
