"""RunStarted / RunFinished carry the composition fields the engine fills in (session, parent, totals)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentrun_core.domain import Cost, RunStatus, TokenUsage
from agentrun_core.ids import new_run_id
from execution_service.api.convert import event_fields
from execution_service.engine.events import RunFinishedEvent, RunStartedEvent

NOW = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)


def test_run_started_carries_session_parent_and_depth() -> None:
    parent = new_run_id()
    started = RunStartedEvent(
        new_run_id(), "researcher", "sha256:x", "test", NOW, "0" * 32, "alice", "chat-1", parent, 1
    )
    message = event_fields(started)["run_started"]
    assert (message.session_id, message.parent_run_id, message.depth) == ("chat-1", parent, 1)
    top = event_fields(RunStartedEvent(new_run_id(), "planner", "v", "test", NOW, "", "alice"))["run_started"]
    assert (top.session_id, top.parent_run_id, top.depth) == ("", "", 0)


def test_run_finished_carries_totals_with_descendants_only_when_set() -> None:
    own = TokenUsage(input_tokens=10, output_tokens=5, total_tokens=15)
    finished = RunFinishedEvent(
        new_run_id(), RunStatus.COMPLETED, "done", own, timedelta(seconds=2), NOW, 2, 1, None, Cost(Decimal("0.01")),
        token_usage_with_descendants=own + own, cost_with_descendants=Cost(Decimal("0.03")),
    )  # fmt: skip
    message = event_fields(finished)["run_finished"]
    assert message.token_usage.total_tokens == 15 and message.token_usage_with_descendants.total_tokens == 30
    assert message.cost_with_descendants.amount == "0.03"
    plain = RunFinishedEvent(new_run_id(), RunStatus.COMPLETED, "", own, timedelta(0), NOW, 1, 0, None, None)
    message = event_fields(plain)["run_finished"]
    assert not message.HasField("token_usage_with_descendants") and not message.HasField("cost_with_descendants")
