"""Bytes that are not the request message (truncated, a string field that is not UTF-8, a broken varint) get
INVALID_ARGUMENT naming the message type expected, on every RPC of both services, health and reflection included,
logged once at WARNING without a traceback (grpc's own answer was UNKNOWN "Unexpected <class DecodeError>" with an
ERROR and a traceback per call)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from grpc_status import rpc_status

from agentrun_core.grpc_status import error_reason
from tests.security.rpcs import EXECUTION_RPCS, RUNS_RPCS, STANDARD_RPCS, Rpc, raw_call
from tests.security.support import secure_stack
from tests.support.auth import ADMIN
from tests.support.stack import Stack

TRUNCATED = b"\x0a\x05ab"  # field 1, length 5, but only 2 bytes follow
BROKEN_VARINT = b"\x08" + b"\xff" * 11  # a varint longer than 10 bytes
NOT_UTF8 = b"\xff\xfe"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def invalid_utf8(message: Descriptor, depth: int = 0) -> bytes | None:
    """An encoding of `message` whose first string field (at any depth up to 3) holds bytes that are not UTF-8;
    None when the message has no string field."""
    for field in message.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            return _length_delimited(field.number, NOT_UTF8)
    if depth < 3:
        for field in message.fields:
            if field.type == FieldDescriptor.TYPE_MESSAGE:
                inner = invalid_utf8(field.message_type, depth + 1)
                if inner is not None:
                    return _length_delimited(field.number, inner)
    return None


ALL_RPCS = [("runs", rpc) for rpc in [*RUNS_RPCS, *STANDARD_RPCS]] + [
    ("execution", rpc) for rpc in [*EXECUTION_RPCS, *STANDARD_RPCS]
]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with secure_stack(tmp_path) as stack:
        yield stack


def _payloads(rpc: Rpc) -> dict[str, bytes]:
    payloads = {"truncated": TRUNCATED, "broken varint": BROKEN_VARINT}
    bad_text = invalid_utf8(rpc.input)
    if bad_text is not None:
        payloads["invalid UTF-8"] = bad_text
    return payloads


def test_every_rpc_is_covered() -> None:
    """The lists come from the descriptors: both services' RPCs, and both standard services."""
    names = {str(rpc) for _, rpc in ALL_RPCS}
    assert {"RunsService.GetRun", "ExecutionService.CancelRun", "Health.Check", "Health.Watch"} <= names
    assert "ServerReflection.ServerReflectionInfo" in names
    assert all(invalid_utf8(rpc.input) is not None for rpc in [*RUNS_RPCS, *STANDARD_RPCS] if rpc.input.fields)


async def test_an_undecodable_request_is_invalid_argument_on_every_rpc(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    calls = 0
    for service, rpc in ALL_RPCS:
        address = stack.runs_address if service == "runs" else stack.execution_address
        channel = stack.channel(address, token=ADMIN)
        for kind, payload in _payloads(rpc).items():
            calls += 1
            try:
                await raw_call(channel, rpc, payload, raise_errors=True)
            except grpc.aio.AioRpcError as exc:
                where = f"{rpc} ({kind})"
                assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, (where, exc.code(), exc.details())
                details = exc.details() or ""
                assert details.startswith(f"the request could not be decoded as {rpc.input.full_name}:"), details
                assert error_reason(exc) == "MALFORMED_REQUEST", where
                status = rpc_status.from_call(exc)
                assert status is not None and status.message == details
            else:
                raise AssertionError(f"{rpc} ({kind}) was accepted")

    warnings = [r for r in caplog.records if r.getMessage() == "request could not be decoded"]
    assert len(warnings) == calls  # once per call
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in warnings)
    assert {r.method for r in warnings} == {rpc.path for _, rpc in ALL_RPCS}  # type: ignore[attr-defined]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_the_issue_repro_without_credentials_is_still_unauthenticated(stack: Stack) -> None:
    """Authentication is decided first: an anonymous caller learns nothing about how its bytes decode."""
    (get_run,) = [rpc for rpc in RUNS_RPCS if rpc.name == "GetRun"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await raw_call(stack.channel(stack.runs_address), get_run, b"\x0a\x02\xff\xfe", raise_errors=True)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_decodable_request_still_works_after_undecodable_ones(stack: Stack) -> None:
    from agentrun.runs.v1 import runs_service_pb2 as rs

    (list_runs,) = [rpc for rpc in RUNS_RPCS if rpc.name == "ListRuns"]
    channel = stack.channel(stack.runs_address, token=ADMIN)
    for _ in range(3):
        answer = await raw_call(channel, list_runs, TRUNCATED)
        assert answer.code == grpc.StatusCode.INVALID_ARGUMENT
    answer = await raw_call(channel, list_runs, rs.ListRunsRequest(page_size=1).SerializeToString())
    assert answer.code == grpc.StatusCode.OK
