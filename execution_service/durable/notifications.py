"""A LISTEN on one PostgreSQL NOTIFY channel of the execution database, for as long as the replica runs: cancel
requests (execution_service.durable.cancellation) and runs entering the shared queue (durable.queue_wakeups) reach
every replica this way. A lost connection is logged and opened again after `RECONNECT_S`; what was announced
meanwhile is not heard (each user has its own way to find it: a stored request, a poll)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)

RECONNECT_S = 1.0


class ChannelListener:
    def __init__(
        self, url: str, channel: str, on_payload: Callable[[str], None], *, listening: Callable[[], None] | None = None
    ) -> None:
        """`listening()`, if given, is called each time the listener (re)connected and listens."""
        self._url = url
        self._channel = channel
        self._on_payload = on_payload
        self._listening = listening
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Calls `on_payload(payload)` for every notification on the channel from now on (until `stop`)."""
        self._task = asyncio.create_task(self._listen(), name=f"listen-{self._channel}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {self._channel}")
                    if self._listening is not None:
                        self._listening()
                    async for notice in conn.notifies():
                        self._on_payload(notice.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "a notification listener lost its connection; reconnecting",
                    extra={"channel": self._channel, "in_s": RECONNECT_S},
                )
            await asyncio.sleep(RECONNECT_S)
