"""Run trees (sub-agents) and sessions built from tests.support.run_factory's consistent runs.

`child_of(parent, call_id)` is a run started by the parent's tool call `call_id` (which `link_child` marks with the
child's id); `with_totals(run, descendants)` sets the run's totals with descendants as the engine does (its own
usage and cost plus every descendant's, each once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import timedelta
from decimal import Decimal

from agentrun_core.domain import (
    Cost,
    ExecutionStep,
    Run,
    RunStatus,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
)
from tests.support.run_factory import make_run


def top_level(
    *,
    agent: str = "planner",
    user: str = "alice",
    session_id: str = "",
    status: RunStatus = RunStatus.COMPLETED,
    start_offset_s: float = 0.0,
    base: Run | None = None,
    seed: int | None = None,
    model_calls: int = 4,
    tool_calls: int = 3,
) -> Run:
    start = None if base is None else base.start_time + timedelta(seconds=start_offset_s)
    run = make_run(
        agent=agent,
        user=user,
        status=status,
        start_time=start,
        seed=seed,
        model_calls=model_calls,
        tool_calls=tool_calls,
    )
    return dataclasses.replace(run, session_id=session_id)


def child_of(
    parent: Run,
    call_id: str,
    *,
    agent: str = "researcher",
    status: RunStatus = RunStatus.COMPLETED,
    start_offset_s: float = 0.5,
    seed: int | None = None,
    model_calls: int = 3,
    tool_calls: int = 2,
) -> Run:
    """A child run of `parent` started by its tool call `call_id`, in the parent's session, by the same user."""
    run = make_run(
        agent=agent,
        user=parent.user,
        status=status,
        start_time=parent.start_time + timedelta(seconds=start_offset_s),
        seed=seed,
        model_calls=model_calls,
        tool_calls=tool_calls,
    )
    return dataclasses.replace(
        run,
        parent_run_id=parent.id,
        root_run_id=parent.root_run_id or parent.id,
        parent_tool_call_id=call_id,
        depth=parent.depth + 1,
        session_id=parent.session_id,
    )


def link_child(parent: Run, child: Run) -> Run:
    """`parent` with the child's id on the tool call (and its result) that started it."""

    def linked(step: ExecutionStep) -> ExecutionStep:
        payload = step.payload
        if isinstance(payload, ToolCallStarted | ToolCallFinished) and payload.call_id == child.parent_tool_call_id:
            return dataclasses.replace(step, payload=dataclasses.replace(payload, child_run_id=child.id))
        return step

    return dataclasses.replace(parent, execution_steps=tuple(linked(s) for s in parent.execution_steps))


def usage_sum(runs: Sequence[Run]) -> TokenUsage:
    total = TokenUsage()
    for run in runs:
        total += run.token_usage
    return total


def cost_sum(runs: Sequence[Run]) -> Decimal:
    return sum((run.cost.amount for run in runs if run.cost is not None), Decimal(0))


def with_totals(run: Run, descendants: Sequence[Run]) -> Run:
    """`run` with its totals including `descendants` (the engine's token_usage/cost_with_descendants)."""
    everything = [run, *descendants]
    cost = run.cost
    assert cost is not None
    return dataclasses.replace(
        run,
        token_usage_with_descendants=usage_sum(everything),
        cost_with_descendants=Cost(cost_sum(everything), cost.currency_code, cost.price_table_version),
    )
