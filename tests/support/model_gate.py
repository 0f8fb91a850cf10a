"""A fake Gemini responder whose model calls for tasks containing "wait" answer only once the test opens the gate:
a run that holds an execution slot for as long as a test needs."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from tests.fakes.gemini_server import FakeResponse


class Gate:
    def __init__(self) -> None:
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    async def respond(self, body: dict[str, Any]) -> FakeResponse:
        if "wait" in str(body.get("contents", "")):
            await asyncio.to_thread(self._open.wait, 60)
        return FakeResponse(text="done")
