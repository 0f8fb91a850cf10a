"""The agent and model names the runs page offers as quick filters: ListAgents, asked at most every `ttl_s` and
never allowed to slow the page down (a short deadline; when ExecutionService is down the page still works, with
free-text quick filters only)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from agentrun_web.clients import Caller, ExecutionApi, ServiceCallError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Names:
    agents: tuple[str, ...] = ()
    models: tuple[str, ...] = ()


class AgentNames:
    def __init__(
        self, ttl_s: float = 30.0, timeout_s: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._names = Names()
        self._fetched_at: float | None = None

    async def get(self, execution: ExecutionApi, caller: Caller) -> Names:
        now = self._clock()
        if self._fetched_at is not None and now - self._fetched_at < self._ttl_s:
            return self._names
        self._fetched_at = now
        try:
            reply = await execution.list_agents(caller, timeout_s=self._timeout_s)
        except ServiceCallError as exc:
            log.info("agent names for the quick filters are unavailable", extra=exc.log_context())
            return self._names
        models = sorted({agent.model for agent in reply.agents if agent.model} | {"test"})
        self._names = Names(agents=tuple(sorted(agent.name for agent in reply.agents)), models=tuple(models))
        return self._names
