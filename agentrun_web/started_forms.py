"""Start forms whose run this console started under another run id.

The start form carries a run id made when it was shown, so that sending it twice reattaches to one run. A run id a
client chooses must be checked against RunsService (was it used before?); while RunsService is down ExecutionService
refuses it (UNAVAILABLE, RUNS_SERVICE_UNAVAILABLE), though it can start a run under an id of its own. The console
then does that, and remembers which run each such form started: the same form sent again (a double click, a retry)
leads to that run. In this process only: several consoles behind a load balancer, sent the same form while
RunsService is down, would each start one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator

# Forms remembered (the oldest forgotten first); a form is sent again within seconds.
CAPACITY = 1000


class StartedForms:
    def __init__(self, capacity: int = CAPACITY) -> None:
        self._capacity = capacity
        self._runs: OrderedDict[str, str] = OrderedDict()
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: dict[str, int] = {}

    def run_of(self, form_run_id: str) -> str | None:
        """The run started for the form with this run id, if it got another id."""
        return self._runs.get(form_run_id)

    def remember(self, form_run_id: str, run_id: str) -> None:
        self._runs[form_run_id] = run_id
        self._runs.move_to_end(form_run_id)
        while len(self._runs) > self._capacity:
            self._runs.popitem(last=False)

    @contextlib.asynccontextmanager
    async def sending(self, form_run_id: str) -> AsyncIterator[None]:
        """One sending of a form at a time: a second waits for the first's run, then finds it (`run_of`)."""
        lock = self._locks.setdefault(form_run_id, asyncio.Lock())
        self._holders[form_run_id] = self._holders.get(form_run_id, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._holders[form_run_id] -= 1
            if not self._holders[form_run_id]:
                del self._holders[form_run_id], self._locks[form_run_id]
