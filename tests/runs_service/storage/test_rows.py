"""Domain <-> row conversion, checked without a database and through JSON text (as the JSON columns store it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
from hypothesis import given
from hypothesis import strategies as st

from agentrun_core.domain import (
    ExecutionStep,
    FinalResponse,
    ModelCall,
    RunError,
    TokenUsage,
    ToolCallFinished,
    ToolCallStarted,
    ToolCallStatus,
    step_kind,
)
from runs_service.storage.rows import payload_from_json, payload_to_json, run_from_row, run_to_rows, step_from_row
from tests.support.run_factory import make_run

counts = st.integers(min_value=0, max_value=2**62)
texts = st.text(max_size=40)
durations = st.integers(min_value=0, max_value=10**12).map(lambda us: timedelta(microseconds=us))
usages = st.builds(TokenUsage, counts, counts, counts, counts, counts, counts)
payloads = st.one_of(
    st.builds(ModelCall, texts, usages, texts, st.none() | durations, texts, st.integers(0, 1000)),
    st.builds(ToolCallStarted, texts, texts, texts, texts),
    st.builds(
        ToolCallFinished,
        texts,
        texts,
        texts,
        texts,
        st.booleans(),
        durations,
        st.sampled_from(ToolCallStatus),
        counts,
        st.booleans(),
    ),
    st.builds(FinalResponse, texts),
    st.builds(RunError, texts, texts),
)


@given(payloads)
def test_payload_round_trips_through_json_text(payload: object) -> None:
    assert isinstance(payload, ModelCall | ToolCallStarted | ToolCallFinished | FinalResponse | RunError)
    stored = orjson.loads(orjson.dumps(payload_to_json(payload)))
    assert payload_from_json(step_kind(payload).value, stored) == payload


def test_naive_datetimes_from_sqlite_come_back_utc() -> None:
    step = ExecutionStep("r", 1, datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC), FinalResponse("x"))
    row = {
        "run_id": "r",
        "sequence": 1,
        "time": datetime(2026, 1, 1, 12, 0, 0, 123456),
        "duration_us": 0,
        "kind": "final_response",
        "payload": {"text": "x"},
    }
    assert step_from_row(row) == step
    assert step_from_row(row).time.tzinfo is UTC


def test_run_rows_round_trip_and_hash_is_canonical() -> None:
    run = make_run()
    rows = run_to_rows(run)
    stored = {**rows.run, "recorded_at": None, "updated_at": None}
    steps = [step_from_row(r) for r in rows.steps]
    assert run_from_row(stored, steps, run.tool_calls) == run
    # The same instant in another timezone, or steps without run_id, hash the same.
    import dataclasses
    from datetime import timezone

    shifted = dataclasses.replace(
        run,
        start_time=run.start_time.astimezone(timezone(timedelta(hours=-5))),
        execution_steps=tuple(dataclasses.replace(s, run_id="") for s in run.execution_steps),
    )
    assert run_to_rows(shifted).record_hash == rows.record_hash
    assert run_to_rows(dataclasses.replace(run, task="other")).record_hash != rows.record_hash
