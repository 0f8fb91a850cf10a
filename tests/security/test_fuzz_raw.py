"""Raw bytes to every RPC of both services and of their health and reflection services (enumerated from the
descriptors): random bytes, valid requests cut short, with a byte changed or with a string field that is not UTF-8.
No answer may be UNKNOWN or INTERNAL, every message and trailer stays small, and both services stay SERVING."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.security.fuzz_support import FUZZ, LoopThread
from tests.security.rpcs import EXECUTION_RPCS, RUNS_RPCS, STANDARD_RPCS, Rpc, raw_call
from tests.security.strategies import raw_requests
from tests.support.auth import ADMIN, ALICE
from tests.support.stack import Stack

RPCS = [("runs", rpc) for rpc in [*RUNS_RPCS, *STANDARD_RPCS]] + [
    ("execution", rpc) for rpc in [*EXECUTION_RPCS, *STANDARD_RPCS]
]


@pytest.mark.parametrize(("service", "rpc"), RPCS, ids=[f"{service}-{rpc}" for service, rpc in RPCS])
def test_raw_bytes_to_every_rpc(service: str, rpc: Rpc, fuzz_stack: tuple[LoopThread, Stack]) -> None:
    thread, stack = fuzz_stack
    address = stack.runs_address if service == "runs" else stack.execution_address

    async def call(payload: bytes, token: str) -> None:
        answer = await raw_call(stack.channel(address, token=token), rpc, payload, timeout_s=20)
        answer.check_bounded(f"{rpc} <- {payload[:60]!r}")

    @settings(FUZZ, max_examples=40)
    @given(payload=raw_requests(rpc.input), token=st.sampled_from([ADMIN, ALICE]))
    def check(payload: bytes, token: str) -> None:
        thread.run(call(payload, token))

    check()


def test_services_still_serving_after_the_raw_fuzz(fuzz_stack: tuple[LoopThread, Stack]) -> None:
    from tests.security.test_fuzz import test_services_still_serving_after_the_fuzz

    test_services_still_serving_after_the_fuzz(fuzz_stack)
