"""CancelRun from any replica. DBOS's own cancel marks a workflow CANCELLED but lets a running step go on (and would
stop the run before it records and publishes its end), so agentrun cancels its way: the request is stored in
agentrun.cancel_requests and announced with NOTIFY on channel `agentrun_cancel`; the replica running the run hears it
at once (LISTEN) and cancels the in-flight model or tool call (immediate) or sets the after-turn flag, and the run ends
CANCELLED through its usual path. A run that no replica runs at that moment (being resumed) reads the stored request
when its workflow starts again. A cancel applied by the replica that runs the run is stored too (not announced): if
that replica dies before the run's end is checkpointed, the run resumes elsewhere and ends cancelled there."""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from execution_service.durable.notifications import ChannelListener

log = logging.getLogger(__name__)

CHANNEL = "agentrun_cancel"

OnCancel = Callable[[str, bool], None]


class CancelRequests:
    def __init__(self, url: str) -> None:
        self._url = url
        self._listener: ChannelListener | None = None

    async def request(self, run_id: str, *, after_turn: bool, announce: bool = True) -> None:
        """Stores the request (an immediate one wins over an after-turn one) and, unless `announce` is False (the
        replica that runs the run applied it already), tells every replica."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO agentrun.cancel_requests (run_id, after_turn) VALUES (%s, %s) "
                "ON CONFLICT (run_id) DO UPDATE SET after_turn = cancel_requests.after_turn AND EXCLUDED.after_turn",
                (run_id, after_turn),
            )
            if announce:
                await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"{'turn' if after_turn else 'now'}:{run_id}"))

    async def stored(self, run_id: str) -> bool | None:
        """The stored request for the run: its after_turn flag, or None when there is none."""
        async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
            cursor = await conn.execute("SELECT after_turn FROM agentrun.cancel_requests WHERE run_id = %s", (run_id,))
            row = await cursor.fetchone()
        return None if row is None else bool(row[0])

    def listen(self, on_cancel: OnCancel) -> None:
        """Calls `on_cancel(run_id, after_turn)` for every request announced from now on (until `stop`)."""

        def heard(payload: str) -> None:
            mode, _, run_id = payload.partition(":")
            on_cancel(run_id, mode == "turn")

        self._listener = ChannelListener(self._url, CHANNEL, heard)
        self._listener.start()

    async def stop(self) -> None:
        if self._listener is not None:
            await self._listener.stop()
            self._listener = None
