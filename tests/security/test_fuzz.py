"""Hypothesis fuzz over every RPC's request message of both services, built field by field from the descriptors
(unicode, huge and negative numbers, unknown enum values, injection-shaped filters, forged page tokens). Every answer
must be OK or a deliberate status: never INTERNAL or UNKNOWN, and both services stay SERVING."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.security.support import secure_stack
from tests.support.auth import ADMIN, ALICE, channel
from tests.support.stack import Stack

F = FieldDescriptor
TRICKY_STRINGS = [
    "",
    " ",
    "echo",
    "test",
    "0190a0f0-0000-7000-8000-000000000001",
    'agent_name = "x\' OR 1=1 --"',
    "status = COMPLETED AND total_tokens > 9223372036854775807",
    'start_time > "2026-13-45T99:99:99Z"',
    'labels.a = "b" OR NOT (',
    "((((((((((((((((((((a = 1))))))))))))))))))))",
    "duration desc",
    "cost asc, start_time",
    "eyJyIjoiYWJjIiwicCI6e319AAAAAAAAAAAAAAAAAAAA",
    "\x00",
    "\ud7ff\ue000\U0010ffff",
    "x" * 5000,
]
_INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_STRING:
        return st.one_of(st.sampled_from(TRICKY_STRINGS), st.text(max_size=40))
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=40)
    if field.type in _INTS:
        low, high = _INTS[field.type]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 if low < 0 else 1]))
    if field.type == F.TYPE_DOUBLE:
        return st.floats()
    if field.type == F.TYPE_FLOAT:
        return st.floats(width=32)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    raise AssertionError(f"unhandled field type {field.type}")


def _nested(descriptor: Descriptor, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    def build() -> st.SearchStrategy[dict[str, Any]]:
        return message_dicts(descriptor, depth)

    return st.deferred(build)


def message_dicts(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Constructor kwargs for `descriptor`: any subset of fields, each with a random value of its type."""
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.fixed_dictionaries(
            {},
            optional={
                "seconds": st.integers(-(2**40), 2**40),
                "nanos": st.integers(-(2**31), 2**31 - 1),
            },
        )
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == F.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                key, value = sub.fields_by_name["key"], sub.fields_by_name["value"]
                if value.type == F.TYPE_MESSAGE:
                    continue
                optional[field.name] = st.dictionaries(_scalar(key), _scalar(value), max_size=3)
                continue
            if depth >= 2 or (
                sub.full_name.startswith("google.protobuf.")
                and "Timestamp" not in sub.full_name
                and "Duration" not in sub.full_name
            ):
                continue
            strategy: st.SearchStrategy[Any] = _nested(sub, depth + 1)
        else:
            strategy = _scalar(field)
        if field.is_repeated:
            strategy = st.lists(strategy, max_size=3)
        optional[field.name] = strategy
    return st.fixed_dictionaries({}, optional=optional)


class LoopThread:
    """An event loop in a thread that owns the stack (entered and left in one task), so sync @given tests can call
    the real servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[Any], timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopThread, Stack]]:
    tmp = tmp_path_factory.mktemp("fuzz")
    thread = LoopThread()
    ready: Future[Stack] = Future()
    stop: asyncio.Event | None = None

    async def own_stack() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with secure_stack(
                Path(tmp), rate_limit_per_minute=0, max_streams_per_user=0, max_message_bytes=1024 * 1024
            ) as stack:
                ready.set_result(stack)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    owner = asyncio.run_coroutine_threadsafe(own_stack(), thread.loop)
    stack = ready.result(60)
    try:
        yield thread, stack
    finally:
        assert stop is not None
        thread.loop.call_soon_threadsafe(stop.set)
        owner.result(60)
        thread.close()


FORBIDDEN = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


async def _answer(call: Callable[[], Awaitable[Any]]) -> grpc.StatusCode:
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        assert exc.code() not in FORBIDDEN, (exc.code(), exc.details())
        return exc.code()
    return grpc.StatusCode.OK


async def _call_runs(stack: Stack, method: str, request: Any, token: str) -> grpc.StatusCode:
    stub = rs_grpc.RunsServiceStub(stack.channel(stack.runs_address, token=token))
    if method == "ExportRuns":

        async def drain() -> None:
            async for _ in stub.ExportRuns(request, timeout=10):
                pass

        return await _answer(drain)
    return await _answer(lambda: getattr(stub, method)(request, timeout=10))


async def _call_execution(stack: Stack, method: str, request: Any, token: str) -> grpc.StatusCode:
    stub = ex_grpc.ExecutionServiceStub(stack.channel(stack.execution_address, token=token))
    call = getattr(stub, method)
    if method in ("ExecuteAgent", "WatchRun"):

        async def drain() -> None:
            async for _ in call(request, timeout=10):
                pass

        return await _answer(drain)
    return await _answer(lambda: call(request, timeout=10))


RUNS_REQUESTS: dict[str, Any] = {
    "RecordRun": rs.RecordRunRequest,
    "RecordRuns": rs.RecordRunsRequest,
    "DeleteRuns": rs.DeleteRunsRequest,
    "ExportRuns": rs.ExportRunsRequest,
    "GetRun": rs.GetRunRequest,
    "ListRuns": rs.ListRunsRequest,
    "ListRunSteps": rs.ListRunStepsRequest,
    "GetRunStats": rs.GetRunStatsRequest,
    "GetToolStats": rs.GetToolStatsRequest,
}
EXECUTION_REQUESTS: dict[str, Any] = {
    "WatchRun": ex.WatchRunRequest,
    "CancelRun": ex.CancelRunRequest,
    "ListAgents": ex.ListAgentsRequest,
}


@pytest.mark.parametrize("method", sorted(RUNS_REQUESTS))
def test_fuzz_runs_service(method: str, fuzz_stack: tuple[LoopThread, Stack]) -> None:
    thread, stack = fuzz_stack
    message = RUNS_REQUESTS[method]

    @FUZZ
    @given(fields=message_dicts(message.DESCRIPTOR), token=st.sampled_from([ADMIN, ALICE]))
    def check(fields: dict[str, Any], token: str) -> None:
        thread.run(_call_runs(stack, method, message(**fields), token))

    check()


@pytest.mark.parametrize("method", sorted(EXECUTION_REQUESTS))
def test_fuzz_execution_service(method: str, fuzz_stack: tuple[LoopThread, Stack]) -> None:
    thread, stack = fuzz_stack
    message = EXECUTION_REQUESTS[method]

    @FUZZ
    @given(fields=message_dicts(message.DESCRIPTOR), token=st.sampled_from([ADMIN, ALICE]))
    def check(fields: dict[str, Any], token: str) -> None:
        thread.run(_call_execution(stack, method, message(**fields), token))

    check()


def test_fuzz_execute_agent(fuzz_stack: tuple[LoopThread, Stack]) -> None:
    """Cheap runs: the agents use the offline test model; the model field only ever names it (or nothing)."""
    thread, stack = fuzz_stack
    fields = message_dicts(ex.ExecuteAgentRequest.DESCRIPTOR).map(
        lambda d: {k: v for k, v in d.items() if k != "model"}
    )

    @FUZZ
    @given(
        fields=fields,
        agent=st.sampled_from(["echo", "leaky", None]),
        model=st.sampled_from(["test", "", "no-such-model"]),
        token=st.sampled_from([ADMIN, ALICE]),
    )
    def check(fields: dict[str, Any], agent: str | None, model: str, token: str) -> None:
        if agent is not None:
            fields["agent_name"] = agent
        thread.run(_call_execution(stack, "ExecuteAgent", ex.ExecuteAgentRequest(model=model, **fields), token))

    check()


def test_services_still_serving_after_the_fuzz(fuzz_stack: tuple[LoopThread, Stack]) -> None:
    thread, stack = fuzz_stack

    async def serving() -> None:
        for address in (stack.runs_address, stack.execution_address):
            ch = channel(address)
            try:
                reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            finally:
                await ch.close()

    thread.run(serving())
