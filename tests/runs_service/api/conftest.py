"""A real RunsService (grpc.aio on 127.0.0.1:0) over each database backend, and a stub to call it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import runs_service_pb2_grpc

from agentrun_core.auth import AuthSettings
from runs_service.config import RunsSettings
from runs_service.server import RunningRunsServer, start_server


@dataclass
class RunsClient:
    server: RunningRunsServer
    channel: grpc.aio.Channel
    stub: runs_service_pb2_grpc.RunsServiceStub
    address: str


async def start_runs_client(db_url: str, data_dir: Path, **overrides: object) -> RunsClient:
    settings = RunsSettings(
        listen_address="127.0.0.1:0",
        database_url=db_url,
        data_dir=data_dir,
        migrate_on_start=True,
        page_token_secret="test-secret-0123456789abcdef",
        auth=AuthSettings.off(),
    ).with_overrides(**overrides)
    server = await start_server(settings)
    address = f"127.0.0.1:{server.port}"
    channel = grpc.aio.insecure_channel(address)
    return RunsClient(server, channel, runs_service_pb2_grpc.RunsServiceStub(channel), address)


@pytest.fixture
async def runs(db_url: str, tmp_path: Path) -> AsyncIterator[RunsClient]:
    client = await start_runs_client(db_url, tmp_path)
    try:
        yield client
    finally:
        await client.channel.close()
        await client.server.stop(0)
