"""The agent and model names the runs page offers as quick filters: ListAgents, asked at most every `ttl_s` per
person and never allowed to slow the page down (a short deadline; when ExecutionService is down the page still works,
with free-text quick filters only).

Names are kept per caller (keyed by a digest of their token, never the token): ExecutionService may show each person
other agents, so one person's list is never offered to another. At most `max_callers` lists are kept (least recently
used dropped).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agentrun_web.clients import Caller, ExecutionApi, ServiceCallError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Names:
    agents: tuple[str, ...] = ()
    models: tuple[str, ...] = ()


@dataclass(slots=True)
class _Entry:
    names: Names
    fetched_at: float


def caller_key(caller: Caller) -> str:
    """Whose names these are: a digest of the token ("" without authentication)."""
    return hashlib.sha256(caller.token.encode()).hexdigest() if caller.token else ""


class AgentNames:
    def __init__(
        self,
        ttl_s: float = 30.0,
        timeout_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        max_callers: int = 1000,
    ) -> None:
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._max_callers = max_callers
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    async def get(self, execution: ExecutionApi, caller: Caller) -> Names:
        key = caller_key(caller)
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            if now - entry.fetched_at < self._ttl_s:
                return entry.names
        else:
            entry = _Entry(Names(), now)
            self._entries[key] = entry
            while len(self._entries) > self._max_callers:
                self._entries.popitem(last=False)
        entry.fetched_at = now
        try:
            reply = await execution.list_agents(caller, timeout_s=self._timeout_s)
        except ServiceCallError as exc:
            log.info("agent names for the quick filters are unavailable", extra=exc.log_context())
            return entry.names
        models = sorted({agent.model for agent in reply.agents if agent.model} | {"test"})
        entry.names = Names(agents=tuple(sorted(agent.name for agent in reply.agents)), models=tuple(models))
        return entry.names
