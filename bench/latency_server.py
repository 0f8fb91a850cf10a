"""Child process of bench/engine.py's latency benchmark: the servers, away from the measuring client.

Runs a real ExecutionService (TestModel, the test MCP server over stdio) publishing to a RunsService in its own
process, as in production, and, beside it, a raw grpc.aio server that replays a given message script. Both record,
with time.perf_counter() (CLOCK_MONOTONIC, so comparable across processes on Linux), when each step is recorded by
the engine (StepRecorder.record: before the live-steps journal and the stream) / yielded by the raw stream. On
SIGTERM it writes those times to the output file as JSON and exits.

Usage: python -m bench.latency_server OUT_JSON PORTS_FILE
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc

from agentrun_core import event_loop
from agentrun_core.auth.settings import AuthSettings
from agentrun_core.serving import wait_for_stop_signal
from bench._util import free_port
from execution_service.api import servicer as servicer_module
from execution_service.config import ExecutionSettings
from execution_service.engine.events import StepEvent
from execution_service.engine.step_recorder import StepRecorder
from execution_service.server import start_server
from tests.support.stack import agent_source, mcp_config, write_agents

TOOLS = ["test/echo", "test/add"]


class Replay(ex_grpc.ExecutionServiceServicer):
    """Replays the script carried by the request: variables["gaps"] (JSON list of seconds) and
    variables["messages"] (JSON list of base64 serialized ExecuteAgentResponse)."""

    def __init__(self) -> None:
        self.sent: dict[str, list[float]] = {}

    async def ExecuteAgent(
        self, request: ex.ExecuteAgentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ex.ExecuteAgentResponse]:
        gaps = json.loads(request.variables["gaps"])
        messages = [
            ex.ExecuteAgentResponse.FromString(base64.b64decode(m)) for m in json.loads(request.variables["messages"])
        ]
        sent = self.sent.setdefault(request.run_id, [])
        for gap, message in zip(gaps, messages, strict=True):
            if gap > 0:
                await asyncio.sleep(gap)
            sent.append(time.perf_counter())
            yield message


async def main(out: Path, ports_file: Path) -> None:
    emitted: dict[str, float] = {}
    original = StepRecorder.record

    def timed_record(self: StepRecorder, payload: Any, **kwargs: Any) -> Any:
        # When the engine records the step: before it is journaled (the live-steps journal) and handed to the stream.
        emitted[f"{self.run_id}/{len(self.steps) + 1}"] = time.perf_counter()
        return original(self, payload, **kwargs)

    StepRecorder.record = timed_record  # type: ignore[method-assign]
    converted: dict[str, float] = {}
    original_response = servicer_module.event_response

    def timed_response(cls: Any, event: Any) -> Any:
        message = original_response(cls, event)
        if isinstance(event, StepEvent):
            converted[f"{event.step.run_id}/{event.step.sequence}"] = time.perf_counter()
        return message

    servicer_module.event_response = timed_response
    replay = Replay()
    raw = grpc.aio.server()
    ex_grpc.add_ExecutionServiceServicer_to_server(replay, raw)
    raw_port = raw.add_insecure_port("127.0.0.1:0")
    await raw.start()
    with tempfile.TemporaryDirectory(prefix="agentrun-bench-latency-") as name:
        tmp = Path(name)
        write_agents(tmp / "agents", {"bench": agent_source(model="test", tools=TOOLS)})
        (tmp / "mcp.json").write_text(json.dumps(mcp_config()))
        runs_address = f"127.0.0.1:{free_port()}"
        runs = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runs_service",
            "--migrate",
            "--address",
            runs_address,
            "--data-dir",
            str(tmp / "runs"),
            env={**os.environ, "AGENTRUN_AUTH": "off", "AGENTRUN_LOG_LEVEL": "WARNING"},
        )
        settings = ExecutionSettings(
            listen_address="127.0.0.1:0",
            runs_service_target=runs_address,
            agents_dir=tmp / "agents",
            mcp_config=tmp / "mcp.json",
            data_dir=tmp / "execution",
            test_model_latency_s=0.01,
            rate_limit_per_minute=0.0,
            auth=AuthSettings.off(),
        )
        execution = await start_server(settings)
        try:
            ports_file.write_text(json.dumps({"engine": f"127.0.0.1:{execution.port}", "raw": f"127.0.0.1:{raw_port}"}))
            await wait_for_stop_signal()
        finally:
            try:
                await execution.stop(1.0)
            finally:
                runs.terminate()
                await runs.wait()
    await raw.stop(0)
    out.write_text(json.dumps({"emitted": emitted, "converted": converted, "raw_sent": replay.sent}))


if __name__ == "__main__":
    # The loop the services run on in production (uvloop where installed); the raw server shares it.
    event_loop.run(main(Path(sys.argv[1]), Path(sys.argv[2])))
