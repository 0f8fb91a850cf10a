"""A LISTEN on one PostgreSQL NOTIFY channel of the execution database, for as long as the replica runs: cancel
requests (execution_service.durable.cancellation) and runs entering the shared queue (durable.queue_wakeups) reach
every replica this way. A lost connection is logged and opened again after `RECONNECT_S` (a `Periodic` whose pass is
one connection's session); what was announced meanwhile is not heard (each user has its own way to find it: a stored
request, a poll)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from execution_service.durable.periodic import Periodic

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
        self._sessions = Periodic(
            self._session,
            interval_s=RECONNECT_S,
            name=f"listen-{channel}",
            chore=f"the notification listener on {channel}",
            failed=f"the notification listener on {channel} lost its connection; reconnecting in {RECONNECT_S} s",
            log=log,
        )

    def start(self) -> None:
        """Calls `on_payload(payload)` for every notification on the channel from now on (until `stop`)."""
        self._sessions.start()

    async def stop(self) -> None:
        await self._sessions.stop()

    async def _session(self) -> None:
        """Listens until the connection is lost."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            await conn.execute(f"LISTEN {self._channel}")
            self._sessions.working()
            if self._listening is not None:
                self._listening()
            async for notice in conn.notifies():
                self._on_payload(notice.payload)
