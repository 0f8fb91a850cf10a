from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from agentrun_core.domain import Cost, Run, RunError, RunStatus, TokenUsage
from runs_service.errors import InvalidArgument
from runs_service.validation import validate_run
from tests.support.run_factory import make_run


def _problem(run: Run) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as info:
        validate_run(run)
    return info.value


def test_valid_runs_pass() -> None:
    for status in RunStatus:
        validate_run(make_run(status=status))
    running_with_error = dataclasses.replace(make_run(status=RunStatus.RUNNING), error=RunError("X", "transient"))
    validate_run(running_with_error)
    no_step_ids = make_run()
    validate_run(
        dataclasses.replace(
            no_step_ids, execution_steps=tuple(dataclasses.replace(s, run_id="") for s in no_step_ids.execution_steps)
        )
    )


@pytest.mark.parametrize(
    ("run_id", "fragment"),
    [
        ("", "must not be empty"),
        ("not-a-uuid", "lower-case UUID"),
        ("0190B6E2-7C3A-7D4E-9F10-2A3B4C5D6E7F", "lower-case UUID"),
        ("6ba7b810-9dad-41d1-80b4-00c04fd430c8", "version 7"),
    ],
)
def test_run_id(run_id: str, fragment: str) -> None:
    problem = _problem(dataclasses.replace(make_run(), id=run_id))
    assert problem.field == "run.id" and fragment in problem.message


def test_fields_are_named() -> None:
    run = make_run()
    steps = list(run.execution_steps)
    cases: list[tuple[Run, str, str]] = [
        (dataclasses.replace(run, agent_name=""), "run.agent_name", "must not be empty"),
        (dataclasses.replace(run, end_time=None), "run.end_time", "terminal status COMPLETED"),
        (
            dataclasses.replace(run, end_time=run.start_time - timedelta(seconds=1)),
            "run.end_time",
            "before start_time",
        ),
        (dataclasses.replace(run, duration=timedelta(seconds=-1)), "run.duration", "negative"),
        (
            dataclasses.replace(run, token_usage=TokenUsage(output_tokens=-3)),
            "run.token_usage.output_tokens",
            "negative, got -3",
        ),
        (dataclasses.replace(run, steps_taken=-1), "run.steps_taken", "negative"),
        (
            dataclasses.replace(run, start_time=datetime(2026, 1, 1)),
            "run.start_time",
            "timezone-aware",
        ),
        (
            dataclasses.replace(run, execution_steps=(*steps[:3], dataclasses.replace(steps[3], run_id="other"))),
            "run.execution_steps[3].run_id",
            "must be empty or the run's id",
        ),
        (
            dataclasses.replace(run, execution_steps=(*steps[:5], *steps[6:])),
            "run.execution_steps[5].sequence",
            "expected 6, got 7",
        ),
        (
            dataclasses.replace(run, execution_steps=(dataclasses.replace(steps[0], sequence=0), *steps[1:])),
            "run.execution_steps[0].sequence",
            "expected 1, got 0",
        ),
        (
            dataclasses.replace(
                run, execution_steps=(*steps[:2], dataclasses.replace(steps[2], duration=timedelta(-1)), *steps[3:])
            ),
            "run.execution_steps[2].duration",
            "negative",
        ),
        (
            dataclasses.replace(run, tool_calls=(*run.tool_calls, run.tool_calls[0])),
            f"run.tool_calls[{len(run.tool_calls)}].id",
            "duplicate tool call id 'call-001'",
        ),
        (
            dataclasses.replace(run, tool_calls=(dataclasses.replace(run.tool_calls[0], duration=timedelta(-1)),)),
            "run.tool_calls[0].duration",
            "negative",
        ),
        (dataclasses.replace(run, cost=Cost(Decimal("-1"))), "run.cost.amount", "non-negative"),
        (dataclasses.replace(run, cost=Cost(Decimal("0.00000000001"))), "run.cost.amount", "10 decimal places"),
        (dataclasses.replace(run, cost=Cost(Decimal("12345678901"))), "run.cost.amount", "below 10^10"),
        (dataclasses.replace(run, agent_name="x" * 300), "run.agent_name", "at most 255 characters"),
    ]
    for bad, field, fragment in cases:
        problem = _problem(bad)
        assert problem.field == field, (field, problem.message)
        assert fragment in problem.message, (field, problem.message)
        assert str(problem).startswith(f"{field}: ")


def test_cost_with_trailing_zeros_is_fine() -> None:
    validate_run(dataclasses.replace(make_run(), cost=Cost(Decimal("0.001496000000000000"))))


@pytest.mark.parametrize("key", ["has space", "", "-leading-dash", "ümlaut", "a" * 129, 'quote"d'])
def test_label_keys_a_filter_could_not_name_are_refused(key: str) -> None:
    problem = _problem(dataclasses.replace(make_run(), labels={key: "x"}))
    assert problem.field == "run.labels" and "label key" in problem.message


def test_label_values_over_256_characters_are_refused_naming_the_key() -> None:
    problem = _problem(dataclasses.replace(make_run(), labels={"env": "dev", "note": "n" * 257}))
    assert problem.field == "run.labels"
    assert "the value of label 'note' is 257 characters, over the cap of 256" in problem.message
    validate_run(dataclasses.replace(make_run(), labels={"note": "n" * 256}))


def test_kubernetes_style_label_keys_are_accepted() -> None:
    validate_run(dataclasses.replace(make_run(), labels={"app.kubernetes.io/name": "web", "team_1": "a"}))
