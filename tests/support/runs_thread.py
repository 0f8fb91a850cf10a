"""A real RunsService on its own event loop in a thread, for synchronous callers (hypothesis, the CLI)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import grpc
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.auth.settings import AuthSettings
from runs_service.config import RunsSettings
from runs_service.server import start_server


class ServerThread:
    """A RunsService on its own event loop in a thread, called through a synchronous channel."""

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

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.port}"
