"""Stopping background tasks, and work that must not be stopped: `cancel_and_wait` cancels tasks and waits until each
has ended; `complete_despite_cancellation` finishes work whatever happens to its caller.

The usual `task.cancel()` then `with suppress(CancelledError): await task` also swallows the cancellation of the
caller itself when it is cancelled while it waits; here the caller's own cancellation propagates, the tasks' is
expected, and a task that had failed before it was cancelled is logged (its error would otherwise go unseen).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


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


async def complete_despite_cancellation(
    work: Coroutine[Any, Any, T], *, what: str, give_way: Callable[[], bool] = lambda: False
) -> T:
    """Runs `work` to its end in a task of its own, waiting for it even when the caller is cancelled meanwhile (the
    cancellation is then withdrawn, and logged), unless `give_way()` says the caller must stop (a service shutting
    down): then the caller's CancelledError propagates and `work` still goes on by itself.

    For the end of a run: once its outcome is known, recording it must not be cut short. A cancellation can still
    arrive then: a second CancelRun, or anyio, whose cancel scopes (httpx's connect) call `task.cancel()` again on
    the next turn of the loop after a task has left them, after the run had absorbed the first cancellation."""
    task = asyncio.ensure_future(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if task.done() and task.cancelled():
                raise
            if give_way() or current is None:
                raise
            current.uncancel()
            log.warning(
                "a cancellation came while work that must end was under way; it ends first", extra={"work": what}
            )
