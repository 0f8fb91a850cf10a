"""Both services let a call wait to be accepted far longer than gRPC's default 30 s.

gRPC cancels a call that its server has not accepted within `grpc.server_max_unrequested_time_in_server` with a bare
CANCELLED. A grpc.aio server accepts one call per turn of its event loop, so a replica whose loop is saturated by a
burst (1,000 ExecuteAgent calls at once, bench/engine.py section 6) accepted calls more slowly than they came and
lost the last ones that way. Waiting 30 s is not something a test can afford, so this checks what each real server
is built with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from agentrun_core.serving import MAX_UNACCEPTED_CALL_WAIT_S
from tests.support.stack import agent_source, running_stack

GRPC_DEFAULT_WAIT_S = 30


async def test_both_services_wait_long_for_their_loop_to_accept_a_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[dict[str, Any]] = []
    real_server = grpc.aio.server

    def recording_server(*args: Any, **kwargs: Any) -> grpc.aio.Server:
        built.append(dict(kwargs.get("options") or []))
        return real_server(*args, **kwargs)

    monkeypatch.setattr(grpc.aio, "server", recording_server)
    async with running_stack(tmp_path, {"a": agent_source()}):
        pass
    assert len(built) == 2, "RunsService and ExecutionService each build one server"
    for options in built:
        wait = options.get("grpc.server_max_unrequested_time_in_server")
        assert wait == MAX_UNACCEPTED_CALL_WAIT_S
        assert wait >= 20 * GRPC_DEFAULT_WAIT_S
