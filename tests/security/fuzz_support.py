"""A module-wide stack for Hypothesis: the sync @given tests call the real servers through an event loop in a
thread (the stack is entered and left in one task of that loop)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.security.support import secure_stack
from tests.support.stack import Stack

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class LoopThread:
    """An event loop in a thread that owns the stack (entered and left in one task), so sync @given tests can call
    the real servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Awaitable[Any], timeout_s: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def running_fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopThread, Stack]]:
    """Both services with authentication on, no rate or stream limits, 1 MiB messages, in a LoopThread."""
    tmp = tmp_path_factory.mktemp("fuzz")
    thread = LoopThread()
    ready: Future[Stack] = Future()
    stop: asyncio.Event | None = None

    async def own_stack() -> None:
        nonlocal stop
        stop = asyncio.Event()
        try:
            async with secure_stack(
                Path(tmp), rate_limit_per_minute=0, max_streams_per_user=0, max_message_bytes=1024 * 1024
            ) as stack:
                ready.set_result(stack)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    owner = asyncio.run_coroutine_threadsafe(own_stack(), thread.loop)
    stack = ready.result(60)
    try:
        yield thread, stack
    finally:
        assert stop is not None
        thread.loop.call_soon_threadsafe(stop.set)
        owner.result(60)
        thread.close()
