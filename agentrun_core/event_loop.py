"""The event loop the services run on: uvloop where it is installed (a dependency on Linux and macOS), otherwise
asyncio's own. `AGENTRUN_EVENT_LOOP` = `auto` (the default), `uvloop` (required: refuse to start without it) or
`asyncio` (e.g. to rule the loop out while debugging). Measured here: uvloop takes the step-to-client latency from
~2.0x to ~1.7x a raw gRPC stream (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from agentrun_core.grpc_process import FORK_SUPPORT_VAR, grpc_fork_handlers_off
from agentrun_core.settings import ProcessSettings, SettingsError

log = logging.getLogger(__name__)

ENV_VAR = "AGENTRUN_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(choice: str | None = None) -> LoopFactory | None:
    """The factory of the loop to run on for `choice` (default: AGENTRUN_EVENT_LOOP, ProcessSettings); None means
    asyncio's. Raises SettingsError for an unknown choice, or for `uvloop` when it is not installed."""
    if choice is None:
        value: str = ProcessSettings.from_env().event_loop
    else:
        value = choice.strip().lower() or "auto"
    if value not in CHOICES:
        raise SettingsError(f"{ENV_VAR} must be one of {', '.join(CHOICES)}, got {value!r}")
    if value == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if value == "uvloop":
            raise SettingsError(f"{ENV_VAR}=uvloop but uvloop is not installed (pip install uvloop)") from None
        return None
    if not grpc_fork_handlers_off():
        problem = (
            f"uvloop needs gRPC's fork handlers off ({FORK_SUPPORT_VAR}=false, the default of the agentrun "
            "commands): with them on, starting a stdio MCP server sometimes fails"
        )
        if value == "uvloop":
            raise SettingsError(f"{ENV_VAR}=uvloop: {problem}")
        log.warning("running on asyncio's event loop: %s", problem)
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], choice: str | None = None) -> T:
    """Runs `main` to completion on the chosen loop (as asyncio.run does) and returns its result."""
    try:
        factory = loop_factory(choice)
    except SettingsError:
        main.close()  # never awaited
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        loop = runner.get_loop()
        log.info("event loop", extra={"event_loop": f"{type(loop).__module__}.{type(loop).__name__}"})
        return runner.run(main)
