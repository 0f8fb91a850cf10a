"""Process lifecycle shared by both services."""

from __future__ import annotations

import asyncio
import signal


async def wait_for_stop_signal() -> None:
    """Returns at the first SIGINT or SIGTERM (handlers are removed again on return)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
