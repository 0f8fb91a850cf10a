"""Checks of a run's composition fields (sub-agent tree, session, fork, totals with descendants) before it is stored.

A run names its relatives by id only: the store does not require them to be stored (records arrive at least once
and in any order through the execution service's outbox), but every id must be a run id, and the fields must agree
with each other:

- a top-level run has no parent_run_id, root_run_id or parent_tool_call_id, and depth 0;
- a child run names its parent, the parent's tool call that started it and the top-level run of its tree, and has
  depth >= 1; depth 1 exactly when its parent is the root;
- totals with descendants are at least the run's own (they add the descendants' to it).
"""

from __future__ import annotations

from agentrun_core.domain import ExecutionStep, Run, SessionHistory, ToolCallFinished, ToolCallStarted
from agentrun_core.echo import shown
from agentrun_core.ids import run_id_problem, session_id_problem
from runs_service.errors import InvalidArgument

# The runs column's size (String(255), as tool_calls.call_id).
PARENT_TOOL_CALL_ID_MAX_LENGTH = 255


def _check_run_id(field: str, value: str, run: Run, *, itself: str = "") -> None:
    problem = run_id_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)
    if value == run.id:
        raise InvalidArgument(field, itself or f"must not be the run's own id {shown(run.id)}")


def _check_session_id(field: str, value: str) -> None:
    problem = session_id_problem(value)
    if problem is not None:
        raise InvalidArgument(field, problem)


def _check_tree(run: Run) -> None:
    if run.depth < 0:
        raise InvalidArgument("run.depth", f"must not be negative, got {run.depth}")
    if not run.parent_run_id:
        for name, value in (("root_run_id", run.root_run_id), ("parent_tool_call_id", run.parent_tool_call_id)):
            if value:
                raise InvalidArgument(
                    f"run.{name}",
                    "must be empty for a top-level run (no parent_run_id); a child run names its parent_run_id, "
                    "root_run_id and parent_tool_call_id",
                )
        if run.depth != 0:
            raise InvalidArgument("run.depth", f"must be 0 for a top-level run (no parent_run_id), got {run.depth}")
        return
    _check_run_id(
        "run.parent_run_id", run.parent_run_id, run, itself="must not be the run's own id: a run is not its own parent"
    )
    if not run.root_run_id:
        raise InvalidArgument("run.root_run_id", "must be set for a child run (the top-level run of its tree)")
    _check_run_id("run.root_run_id", run.root_run_id, run)
    if not run.parent_tool_call_id:
        raise InvalidArgument("run.parent_tool_call_id", "must be set for a child run (the tool call that started it)")
    if len(run.parent_tool_call_id) > PARENT_TOOL_CALL_ID_MAX_LENGTH:
        raise InvalidArgument(
            "run.parent_tool_call_id",
            f"must be at most {PARENT_TOOL_CALL_ID_MAX_LENGTH} characters, got {len(run.parent_tool_call_id)}",
        )
    if run.depth < 1:
        raise InvalidArgument("run.depth", f"must be at least 1 for a child run, got {run.depth}")
    if run.depth == 1 and run.root_run_id != run.parent_run_id:
        raise InvalidArgument(
            "run.root_run_id", "must equal parent_run_id at depth 1 (the parent of a depth-1 run is the root)"
        )
    if run.depth > 1 and run.root_run_id == run.parent_run_id:
        raise InvalidArgument(
            "run.depth", f"must be 1 when the parent is the root (root_run_id = parent_run_id), got {run.depth}"
        )


def _check_totals(run: Run) -> None:
    usage = run.token_usage_with_descendants
    if usage is not None:
        own = run.token_usage.counts()
        for name, count in usage.counts().items():
            if count < 0:
                raise InvalidArgument(f"run.token_usage_with_descendants.{name}", f"must not be negative, got {count}")
            if count < own[name]:
                raise InvalidArgument(
                    f"run.token_usage_with_descendants.{name}",
                    f"must be at least the run's own token_usage.{name} ({own[name]}): it adds the descendants' "
                    f"usage to the run's own, got {count}",
                )
    cost, own_cost = run.cost_with_descendants, run.cost
    if (
        cost is not None
        and own_cost is not None
        and own_cost.currency_code == cost.currency_code
        and cost.amount < own_cost.amount
    ):
        raise InvalidArgument(
            "run.cost_with_descendants.amount",
            f"must be at least the run's own cost ({own_cost.amount}): it adds the descendants' cost to the run's "
            f"own, got {cost.amount}",
        )


def _check_session_history(field: str, history: SessionHistory, run: Run) -> None:
    if not run.session_id:
        raise InvalidArgument(f"{field}.session_history", "is only allowed in a run of a session (run.session_id)")
    if history.session_id != run.session_id:
        raise InvalidArgument(
            f"{field}.session_history.session_id",
            f"must be the run's session_id {shown(run.session_id)}, got {shown(history.session_id)}",
        )
    for name, ids in (("run_ids", history.run_ids), ("dropped_run_ids", history.dropped_run_ids)):
        for index, value in enumerate(ids):
            _check_run_id(f"{field}.session_history.{name}[{index}]", value, run)
    if history.first_turn is not None:
        _check_run_id(f"{field}.session_history.first_turn.run_id", history.first_turn.run_id, run)
        if history.first_turn.sequence < 0:
            raise InvalidArgument(
                f"{field}.session_history.first_turn.sequence",
                f"must not be negative (0 is the run's task), got {history.first_turn.sequence}",
            )
    for name in ("turn_count", "dropped_turn_count", "token_limit", "token_count"):
        value = getattr(history, name)
        if value < 0:
            raise InvalidArgument(f"{field}.session_history.{name}", f"must not be negative, got {value}")


def check_step_depth(field: str, depth: int) -> None:
    """A stored step's depth (`field` is e.g. "run.execution_steps[3]"): the rows do not keep it, so it is checked
    before they are built."""
    if depth != 0:
        raise InvalidArgument(
            f"{field}.depth",
            f"must be 0 in a stored run, got {depth}: a run's record holds only its own steps (a child run's "
            "steps, carried in its parent's stream with depth >= 1, are stored in the child run's record)",
        )


def check_step(field: str, step: ExecutionStep, run: Run) -> None:
    """The composition fields of one stored step (`field` is e.g. "run.execution_steps[3]")."""
    check_step_depth(field, step.depth)
    payload = step.payload
    if isinstance(payload, ToolCallStarted | ToolCallFinished) and payload.child_run_id:
        kind = "tool_call" if isinstance(payload, ToolCallStarted) else "tool_result"
        _check_run_id(f"{field}.{kind}.child_run_id", payload.child_run_id, run)
    elif isinstance(payload, SessionHistory):
        _check_session_history(field, payload, run)


def check_run(run: Run) -> None:
    """The composition fields of `run` (costs' own limits are checked with the run's other costs)."""
    _check_tree(run)
    if run.session_id:
        _check_session_id("run.session_id", run.session_id)
    if run.forked_from is not None:
        _check_run_id("run.forked_from.run_id", run.forked_from.run_id, run, itself="must not be the run's own id")
        if run.forked_from.sequence < 1:
            raise InvalidArgument(
                "run.forked_from.sequence",
                f"must be at least 1 (the last step of the original the fork replayed), got {run.forked_from.sequence}",
            )
    _check_totals(run)
