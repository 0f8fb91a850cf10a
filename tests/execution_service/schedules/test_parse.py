"""The schedule: front matter: what loads, and a clear broken-agent problem for what does not."""

from __future__ import annotations

from pathlib import Path

import pytest

from execution_service.agents.registry import AgentRegistry
from execution_service.schedules.spec import MissedTicks, ScheduleSpec
from tests.support.stack import agent_source, write_agents

GOOD = """schedule:
  - name: morning
    cron: "0 7 * * 1-5"
    timezone: Europe/Paris
    task: Summarise yesterday
    variables: {city: Lima, days: 2}
    labels: {env: prod}
    missed: run_late_once
  - name: often
    cron: "*/30 * * * * *"
    task: Check"""
INPUT = """input:
  schema:
    city?: string
    days?: integer"""


def load(tmp_path: Path, front_matter: str) -> AgentRegistry:
    write_agents(tmp_path, {"reporter": agent_source(extra_front_matter=front_matter)})
    registry = AgentRegistry(tmp_path, "test")
    registry.load()
    return registry


def test_schedules_load_with_defaults(tmp_path: Path) -> None:
    registry = load(tmp_path, f"{INPUT}\n{GOOD}")
    assert registry.problems() == []
    agent = registry.get("reporter")
    assert agent is not None
    assert agent.schedules == (
        ScheduleSpec(
            agent_name="reporter",
            name="morning",
            cron="0 7 * * 1-5",
            timezone="Europe/Paris",
            task="Summarise yesterday",
            variables={"city": "Lima", "days": "2"},
            labels={"env": "prod"},
            missed=MissedTicks.RUN_LATE_ONCE,
        ),
        ScheduleSpec(agent_name="reporter", name="often", cron="*/30 * * * * *", timezone="UTC", task="Check"),
    )
    single = load(tmp_path, 'schedule:\n  - cron: "@daily"\n    task: Once a day').get("reporter")
    assert single is not None and [s.key for s in single.schedules] == ["reporter/default"]


@pytest.mark.parametrize(
    ("front_matter", "problem"),
    [
        ('schedule:\n  - cron: "0 25 * * *"\n    task: x', "schedule[0].cron: cron '0 25 * * *' is not a valid cron"),
        ('schedule:\n  - cron: "every day"\n    task: x', "schedule[0].cron: cron 'every day' has 2 fields"),
        ('schedule:\n  - cron: "0 0 31 2 *"\n    task: x', "never fires"),
        (
            'schedule:\n  - cron: "0 7 * * *"\n    timezone: Europe/Lyon\n    task: x',
            "schedule[0].timezone: time zone 'Europe/Lyon' is unknown",
        ),
        ('schedule:\n  - cron: "0 7 * * *"', "schedule[0].task: is required"),
        ('schedule:\n  - cron: "0 7 * * *"\n    task: x\n    missed: catch_up', "schedule[0].missed: must be one of"),
        ('schedule:\n  - cron: "0 7 * * *"\n    task: x\n    variables: {town: Lima}', "unknown variables: 'town'"),
        ('schedule:\n  - cron: "0 7 * * *"\n    task: x\n    labels: {agentrun.x: y}', "reserved"),
        (
            'schedule:\n  - cron: "0 7 * * *"\n    task: x\n    labels: {note: ' + "n" * 257 + "}",
            "schedule[0].labels: the value of label 'note' is 257 characters, over the cap of 256",
        ),
        ('schedule:\n  - {cron: "@daily", task: a}\n  - {cron: "@daily", task: b}', "schedule[0].name: is required"),
        (
            'schedule:\n  - {name: a, cron: "@daily", task: a}\n  - {name: a, cron: "@hourly", task: b}',
            "schedule[1].name: 'a' is used by an earlier schedule",
        ),
        ('schedule: "0 7 * * *"', "schedule: must be a list of schedules"),
    ],
)
def test_a_bad_schedule_is_a_broken_agent_with_the_problem(tmp_path: Path, front_matter: str, problem: str) -> None:
    registry = load(tmp_path, front_matter)
    assert registry.get("reporter") is None
    (reported,) = registry.problems()
    assert reported.path == tmp_path / "reporter.prompt"
    assert problem in reported.message
