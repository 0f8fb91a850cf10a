"""Hypothesis fuzz over every RPC's request message of both services (enumerated from the service descriptors, so
a new RPC is fuzzed without a test change), built field by field from the descriptors (unicode, huge and negative
numbers, unknown enum values, injection-shaped filters, forged page tokens). Every answer must be OK or a
deliberate status, never INTERNAL or UNKNOWN, with a short message and small trailers; both services stay SERVING.
Raw bytes (random, truncated, not UTF-8): tests/security/test_fuzz_raw.py."""

from __future__ import annotations

from typing import Any

import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given
from hypothesis import strategies as st

from tests.security.fuzz_support import FUZZ, LoopThread
from tests.security.rpcs import EXECUTION_RPCS, RUNS_RPCS, Rpc, raw_call
from tests.security.strategies import message_dicts
from tests.support.auth import ADMIN, ALICE, channel
from tests.support.stack import Stack


async def _call(stack: Stack, service: str, rpc: Rpc, request: Any, token: str) -> None:
    address = stack.runs_address if service == "runs" else stack.execution_address
    answer = await raw_call(
        stack.channel(address, token=token), rpc, request.SerializeToString(), whole_stream=True, timeout_s=20
    )
    answer.check_bounded(str(rpc))


RPCS = [("runs", rpc) for rpc in RUNS_RPCS] + [("execution", rpc) for rpc in EXECUTION_RPCS]


@pytest.mark.parametrize(("service", "rpc"), RPCS, ids=[str(rpc) for _, rpc in RPCS])
def test_fuzz_every_rpc(service: str, rpc: Rpc, fuzz_stack: tuple[LoopThread, Stack]) -> None:
    thread, stack = fuzz_stack
    message = message_factory.GetMessageClass(rpc.input)

    @FUZZ
    @given(fields=message_dicts(rpc.input), token=st.sampled_from([ADMIN, ALICE]))
    def check(fields: dict[str, Any], token: str) -> None:
        thread.run(_call(stack, service, rpc, message(**fields), token))

    check()


def test_fuzz_execute_agent_with_real_agents(fuzz_stack: tuple[LoopThread, Stack]) -> None:
    """Cheap runs: the agents use the offline test model; the model field only ever names it (or nothing)."""
    thread, stack = fuzz_stack
    (execute,) = [rpc for rpc in EXECUTION_RPCS if rpc.name == "ExecuteAgent"]
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
        request = ex.ExecuteAgentRequest(model=model, **fields)
        thread.run(_call(stack, "execution", execute, request, token))

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
