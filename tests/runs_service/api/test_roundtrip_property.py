"""Property: any valid run goes through RecordRun and comes back from GetRun(FULL) unchanged, on every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentrun_core import domain as d
from agentrun_core.auth.settings import AuthSettings
from agentrun_core.ids import new_run_id
from agentrun_core.proto_convert import run_to_pb
from runs_service.config import RunsSettings
from runs_service.server import start_server

# Any Unicode text but NUL (refused with INVALID_ARGUMENT: PostgreSQL cannot store it) and lone surrogates
# (not representable in protobuf strings).
TEXT = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=40)
NAME = TEXT.filter(lambda s: s != "").map(lambda s: s[:40])
LABEL_KEY = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-/]{0,39}", fullmatch=True)
TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC))
DURATIONS = st.integers(0, 10**12).map(lambda us: timedelta(microseconds=us))
COUNTS = st.integers(0, 2**40)
USAGE = st.builds(d.TokenUsage, COUNTS, COUNTS, COUNTS, COUNTS, COUNTS, COUNTS)
RUN_IDS = st.integers(0, 2**122 - 1).map(
    lambda n: str(
        uuid.UUID(int=((n >> 74) << 80) | (7 << 76) | (((n >> 62) & 0xFFF) << 64) | (2 << 62) | (n & (2**62 - 1)))
    )
)
COSTS = st.decimals(min_value=0, max_value=Decimal("99999"), places=10, allow_nan=False, allow_infinity=False).map(
    lambda amount: d.Cost(
        amount=amount.normalize() if amount else Decimal(0), currency_code="USD", price_table_version="t"
    )
)

SHARES = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
ATTEMPTS = st.builds(
    d.ModelAttempt,
    attempt=st.integers(1, 10),
    reason=TEXT,
    message=TEXT,
    start_time=TIMES,
    duration=DURATIONS,
    code=st.integers(0, 599),
    status=TEXT,
    wait_before_next=st.none() | DURATIONS,
)


@st.composite
def payloads(draw: st.DrawFn, call_ids: list[str]) -> d.StepPayload:
    kind = draw(st.sampled_from(["model", "call", "result", "final", "error"]))
    if kind == "model":
        return d.ModelCall(
            model=draw(NAME),
            usage=draw(USAGE),
            finish_reason=draw(st.sampled_from(["STOP", "MAX_TOKENS", ""])),
            time_to_first_token=draw(st.none() | DURATIONS),
            text=draw(TEXT),
            function_call_count=draw(st.integers(0, 20)),
            failed_attempts=tuple(draw(st.lists(ATTEMPTS, max_size=3))),
            thoughts=draw(TEXT),
            input_token_limit=draw(st.integers(0, 2**40)),
            context_window_used=draw(SHARES),
        )
    if kind == "call":
        return d.ToolCallStarted(call_id=draw(NAME), tool_name=draw(NAME), server=draw(TEXT), arguments_json=draw(TEXT))
    if kind == "result":
        return d.ToolCallFinished(
            call_id=draw(NAME),
            tool_name=draw(TEXT),
            result_text=draw(TEXT),
            result_json=draw(TEXT),
            is_error=draw(st.booleans()),
            duration=draw(DURATIONS),
            status=draw(st.sampled_from(list(d.ToolCallStatus))),
            original_size_bytes=draw(st.integers(0, 2**40)),
            truncated=draw(st.booleans()),
        )
    if kind == "final":
        return d.FinalResponse(text=draw(TEXT))
    return d.RunError(reason=draw(NAME), message=draw(TEXT))


@st.composite
def runs(draw: st.DrawFn) -> d.Run:
    run_id = draw(RUN_IDS)
    status = draw(st.sampled_from(list(d.RunStatus)))
    start = draw(TIMES)
    end = start + draw(DURATIONS) if status.is_terminal or draw(st.booleans()) else None
    steps = tuple(
        d.ExecutionStep(run_id=run_id, sequence=i + 1, time=draw(TIMES), duration=draw(DURATIONS), payload=p)
        for i, p in enumerate(draw(st.lists(payloads([]), max_size=6)))
    )
    call_ids = draw(st.lists(NAME, unique=True, max_size=4))
    tool_calls = tuple(
        d.ToolCallRecord(
            id=call_id,
            name=draw(NAME),
            server=draw(TEXT),
            parameters_json=draw(TEXT),
            result=draw(TEXT),
            duration=draw(DURATIONS),
            status=draw(st.sampled_from(list(d.ToolCallStatus))),
            start_time=draw(TIMES),
            is_error=draw(st.booleans()),
        )
        for call_id in call_ids
    )
    return d.Run(
        id=run_id,
        agent_name=draw(NAME),
        status=status,
        start_time=start,
        agent_version=draw(TEXT),
        user=draw(TEXT),
        task=draw(TEXT),
        labels=draw(st.dictionaries(LABEL_KEY, TEXT, max_size=3)),
        variables=draw(st.dictionaries(NAME, TEXT, max_size=3)),
        error=draw(st.none() | st.builds(d.RunError, NAME, TEXT)),
        final_response=draw(TEXT),
        model_name=draw(TEXT),
        end_time=end,
        duration=(end - start) if end is not None else draw(st.none() | DURATIONS),
        token_usage=draw(USAGE),
        cost=draw(st.none() | COSTS),
        steps_taken=draw(st.integers(0, 1000)),
        tools_used=tuple(draw(st.lists(NAME, max_size=3))),
        trace_id=draw(st.sampled_from(["", "0af7651916cd43dd8448eb211c80319c"])),
        execution_steps=steps,
        tool_calls=tool_calls,
        max_context_window_used=draw(SHARES),
    )


class ServerThread:
    """A RunsService on its own event loop in a thread, so hypothesis can call it through a sync channel."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        settings_ = RunsSettings(
            listen_address="127.0.0.1:0",
            database_url=db_url,
            data_dir=data_dir,
            migrate_on_start=True,
            page_token_secret="property-secret-0123456789",
            auth=AuthSettings.off(),
        )
        self.server = asyncio.run_coroutine_threadsafe(start_server(settings_), self._loop).result(60)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.server.port}")
        self.stub = rs_grpc.RunsServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()
        asyncio.run_coroutine_threadsafe(self.server.stop(0), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def runs_server(db_url: str, tmp_path: Path) -> Iterator[ServerThread]:
    server = ServerThread(db_url, tmp_path)
    try:
        yield server
    finally:
        server.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(run=runs())
def test_any_run_round_trips_through_record_and_get_full(runs_server: ServerThread, run: d.Run) -> None:
    # A fresh id per example: hypothesis shrinks ids towards the same value, and one database serves every example.
    run_id = new_run_id()
    run = dataclasses.replace(
        run, id=run_id, execution_steps=tuple(dataclasses.replace(s, run_id=run_id) for s in run.execution_steps)
    )
    message = run_to_pb(run)
    reply = runs_server.stub.RecordRun(rs.RecordRunRequest(run=message), timeout=30)
    assert reply.outcome in (rs.RECORD_OUTCOME_CREATED, rs.RECORD_OUTCOME_UNCHANGED)
    stored = runs_server.stub.GetRun(rs.GetRunRequest(run_id=run.id, view=rs.RUN_VIEW_FULL), timeout=30).run
    if stored != message:
        diff = difflib.unified_diff(
            str(message).splitlines(), str(stored).splitlines(), "recorded", "read back", lineterm=""
        )
        raise AssertionError("\n".join(diff))
