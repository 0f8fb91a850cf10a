"""Stopping background tasks: `cancel_and_wait` cancels tasks and waits until each has ended.

The usual `task.cancel()` then `with suppress(CancelledError): await task` also swallows the cancellation of the
caller itself when it is cancelled while it waits; here the caller's own cancellation propagates, the tasks' is
expected, and a task that had failed before it was cancelled is logged (its error would otherwise go unseen).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancels the tasks (None and finished ones are fine) and returns once every one of them has ended."""
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if not pending:
        return
    await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled() and task.exception() is not None:
            name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
            log.error(
                "a background task had failed before it was stopped", extra={"task": name}, exc_info=task.exception()
            )
