"""A stack with authentication on for both services, and helpers to read exact statuses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_status import rpc_status

from tests.support.auth import ADMIN, SERVICE, token_auth
from tests.support.stack import Stack, agent_source, running_stack

AGENTS = {
    "echo": agent_source(),
    "leaky": agent_source(tools=["test/secret_config"]),
}


@asynccontextmanager
async def secure_stack(tmp: Path, agents: dict[str, str] | None = None, **overrides: Any) -> AsyncIterator[Stack]:
    """Both services with AGENTRUN_AUTH=tokens (tests.support.auth.TOKENS); ExecutionService records runs with the
    service token; the stack's own reads use the admin token."""
    auth = token_auth(tmp / "tokens.jsonl", reflection_public=overrides.pop("reflection_public", False))
    async with running_stack(
        tmp,
        agents or AGENTS,
        runs_auth=auth,
        auth=auth,
        runs_service_token=SERVICE,
        reader_token=ADMIN,
        **overrides,
    ) as stack:
        yield stack


async def status_of(call: Callable[[], Awaitable[Any]]) -> tuple[grpc.StatusCode, str]:
    """The status code and details a call ends with (OK when it succeeds)."""
    try:
        await call()
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""


async def drain(stream: Any) -> list[Any]:
    return [item async for item in stream]


def retry_delay_s(error: grpc.aio.AioRpcError) -> float | None:
    from google.rpc import error_details_pb2

    status = rpc_status.from_call(error)
    if status is None:
        return None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToNanoseconds() / 1e9
    return None
