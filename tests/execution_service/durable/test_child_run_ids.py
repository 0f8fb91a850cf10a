"""A durable sub-agent call's child run id: derived from the parent's run id and the call's checkpointed step, so
every execution of the parent names the same child, and a valid run id (UUIDv7) of its own."""

from __future__ import annotations

import uuid

from agentrun_core.ids import new_run_id, run_id_problem
from execution_service.durable.children import child_run_id


def test_the_same_parent_and_step_name_the_same_child_and_others_do_not() -> None:
    parent = new_run_id()
    ids = {child_run_id(parent, step) for step in range(1, 200)}
    assert len(ids) == 199 and child_run_id(parent, 7) == child_run_id(parent, 7)
    assert child_run_id(new_run_id(), 7) != child_run_id(parent, 7)
    for value in ids:
        assert run_id_problem(value) is None, value
        # It sorts with its parent: the same millisecond timestamp.
        assert uuid.UUID(value).int >> 80 == uuid.UUID(parent).int >> 80
