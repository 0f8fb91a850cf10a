"""Oversized values get their real status with a short message: nothing a request carries is echoed whole into a
status message, grpc-status-details-bin or a log line. (A 1 MB run id used to come back as a 1 MB message and a
1 MB details trailer, which a default client sees as RESOURCE_EXHAUSTED "received metadata size exceeds hard
limit"; CancelRun also forwarded it to RunsService and logged it whole.)"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import runs_service_pb2 as rs
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from agentrun_core.grpc_status import error_reason
from tests.security.rpcs import EXECUTION_RPCS, RUNS_RPCS, Answer, Rpc, raw_call
from tests.security.support import drain, secure_stack
from tests.support.auth import ADMIN, ALICE
from tests.support.stack import Stack

MEGABYTE_ID = "a" * 1_000_000
MAX_LOGGED_CHARS = 5_000  # the longest log line any of these calls may write (message and values)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with secure_stack(tmp_path, rate_limit_per_minute=0, max_streams_per_user=0) as stack:
        yield stack


async def _failure(call: Callable[[], Awaitable[Any]]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call()
    return caught.value


def _answer_of(error: grpc.aio.AioRpcError) -> Answer:
    trailers = error.trailing_metadata() or ()
    size = sum(len(k) + len(v) for k, v in trailers) + len((error.details() or "").encode())
    return Answer(error.code(), error.details() or "", size)


def _assert_short_logs(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        line = record.getMessage() + " ".join(str(v) for v in vars(record).values() if isinstance(v, str))
        assert len(line) < MAX_LOGGED_CHARS + 2_000, (record.name, record.getMessage()[:200], len(line))


async def test_a_megabyte_run_id_is_invalid_argument_with_a_short_message_and_never_reaches_runs_service(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    execution = stack.execution_stub(ALICE)  # a default client: 8 KiB metadata limit
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "CancelRun": lambda: execution.CancelRun(ex.CancelRunRequest(run_id=MEGABYTE_ID)),
        "WatchRun": lambda: drain(execution.WatchRun(ex.WatchRunRequest(run_id=MEGABYTE_ID))),
        "ExecuteAgent": lambda: drain(
            execution.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="hi", run_id=MEGABYTE_ID))
        ),
        "GetRun": lambda: stack.runs_stub(ALICE).GetRun(rs.GetRunRequest(run_id=MEGABYTE_ID)),
    }
    for name, call in calls.items():
        error = await _failure(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.code(), (error.details() or "")[:200])
        details = error.details() or ""
        assert details.startswith("run_id: must be a lower-case UUID string"), (name, details[:200])
        assert "(1000000 characters)" in details and len(details) < 250, (name, details)
        _answer_of(error).check_bounded(name)
    # RunsService was never asked about the id (it would have answered INVALID_ARGUMENT, logged as a warning).
    assert not [r for r in caplog.records if r.name.startswith("execution_service.publish")]
    _assert_short_logs(caplog)


async def test_an_id_that_is_not_a_uuidv7_is_invalid_argument_on_cancel_and_watch(stack: Stack) -> None:
    execution = stack.execution_stub(ALICE)
    for call in (
        lambda: execution.CancelRun(ex.CancelRunRequest(run_id="not-a-run")),
        lambda: drain(execution.WatchRun(ex.WatchRunRequest(run_id="x\n09:00:00 ERROR forged log line"))),
    ):
        error = await _failure(call)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(error) == "INVALID_ARGUMENT"


async def test_a_100_kb_agent_name_is_not_found_with_a_short_message(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request = ex.ExecuteAgentRequest(agent_name="x" * 100_000, task="hi")
    error = await _failure(lambda: drain(stack.execution_stub(ALICE).ExecuteAgent(request)))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "(100000 characters) not found; available agents: echo, leaky" in (error.details() or "")
    _answer_of(error).check_bounded("agent name")
    _assert_short_logs(caplog)


async def test_5000_unknown_variables_are_invalid_argument_naming_a_few(stack: Stack) -> None:
    variables = {f"variable_{i:05d}": "x" for i in range(5_000)}  # 80 KB, under the 100 KB cap
    request = ex.ExecuteAgentRequest(agent_name="echo", task="hi", variables=variables)
    error = await _failure(lambda: drain(stack.execution_stub(ALICE).ExecuteAgent(request)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert details.startswith("variables: unknown variables: 'variable_00000', 'variable_00001'"), details[:200]
    assert "and 4990 more (this agent takes: none besides the task)" in details
    _answer_of(error).check_bounded("variables")


async def test_a_long_invalid_variable_value_is_cut(tmp_path: Path) -> None:
    from tests.support.stack import agent_source

    typed = agent_source(extra_front_matter="input:\n  schema:\n    days: integer")
    async with secure_stack(tmp_path, agents={"typed": typed}) as stack:
        request = ex.ExecuteAgentRequest(agent_name="typed", task="hi", variables={"days": "9" * 50_000 + "x"})
        error = await _failure(lambda: drain(stack.execution_stub(ALICE).ExecuteAgent(request)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "days: expected an integer, got '999" in (error.details() or "")
        _answer_of(error).check_bounded("variable value")


def _oversized(message: type[Message], field: FieldDescriptor) -> Message | None:
    """`message` with `field` oversized: a 500 KB string, 5,000 entries of a map or a repeated string."""
    request = message()
    if field.type == FieldDescriptor.TYPE_STRING:
        if field.is_repeated:
            getattr(request, field.name).extend(f"{i}-{'s' * 60}" for i in range(5_000))
        else:
            setattr(request, field.name, "s" * 500_000)
        return request
    if field.type == FieldDescriptor.TYPE_MESSAGE and field.message_type.GetOptions().map_entry:
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        if key.type == value.type == FieldDescriptor.TYPE_STRING:
            getattr(request, field.name).update({f"k{i:05d}{'k' * 40}": "v" * 40 for i in range(5_000)})
            return request
    return None


def _message_class(rpc: Rpc) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(rpc.input)


def _oversized_requests() -> list[tuple[str, Rpc, str]]:
    cases = []
    for service, rpcs in (("runs", RUNS_RPCS), ("execution", EXECUTION_RPCS)):
        for rpc in rpcs:
            for field in rpc.input.fields:
                if _oversized(_message_class(rpc), field) is not None:
                    cases.append((service, rpc, field.name))
    return cases


async def test_every_oversized_field_of_every_rpc_gets_a_bounded_answer(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    cases = _oversized_requests()
    assert {(str(rpc), name) for _, rpc, name in cases} >= {
        ("ExecutionService.ExecuteAgent", "agent_name"),
        ("ExecutionService.ExecuteAgent", "variables"),
        ("ExecutionService.CancelRun", "run_id"),
        ("RunsService.ListRuns", "filter"),
    }
    for service, rpc, name in cases:
        address = stack.runs_address if service == "runs" else stack.execution_address
        request = _oversized(_message_class(rpc), rpc.input.fields_by_name[name])
        assert request is not None
        if rpc.name == "ExecuteAgent" and name != "agent_name":
            request.agent_name = "echo"
            request.task = request.task or "hi"
        for token in (ADMIN, ALICE):
            answer = await raw_call(stack.channel(address, token=token), rpc, request.SerializeToString(), metadata=())
            answer.check_bounded(f"{rpc}.{name}")
    _assert_short_logs(caplog)
