"""Admission of runs to execution (embedded mode): at most `max_running` runs execute at once on this instance; the
others wait in first-in, first-out order, at most `max_queued` of them, and a run over that bound is refused.

A slot passes straight from the run that frees it to the next one in line, so a run arriving while others wait never
jumps the queue. Everything happens on the event loop: no locks.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict
from dataclasses import dataclass, field

from execution_service.errors import QueueFull

# The name RunQueued.queue_name carries for this instance's in-process queue.
EMBEDDED_QUEUE_NAME = "embedded"


@dataclass(eq=False, slots=True)
class Ticket:
    """One run's place: it holds a slot (`admitted`), or waits in the queue at `position` (1: next in line, when it
    was queued)."""

    number: int
    admitted: bool = False
    position: int = 0
    _granted: asyncio.Future[None] | None = field(default=None, repr=False)
    _left: bool = False


def within_parent_slot() -> Ticket:
    """The ticket of a child run (a sub-agent's): it runs within its parent's slot, so it takes no slot of its own and
    leaving it frees none."""
    return Ticket(0, admitted=True, _left=True)


class AdmissionQueue:
    def __init__(self, max_running: int, max_queued: int) -> None:
        """`max_queued` 0: no queue (a run over `max_running` is refused at once)."""
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        if max_queued < 0:
            raise ValueError(f"max_queued must not be negative, got {max_queued}")
        self.max_running = max_running
        self.max_queued = max_queued
        self._running = 0
        self._waiting: OrderedDict[int, Ticket] = OrderedDict()
        self._numbers = itertools.count(1)

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def enter(self) -> Ticket:
        """A slot now, or a place in the queue; QueueFull when neither is free."""
        ticket = Ticket(next(self._numbers))
        if self._running < self.max_running and not self._waiting:
            self._running += 1
            ticket.admitted = True
            return ticket
        if len(self._waiting) >= self.max_queued:
            raise QueueFull(
                f"{self._running} runs are executing on this execution service (AGENTRUN_MAX_CONCURRENT_RUNS="
                f"{self.max_running}) and its queue holds {len(self._waiting)} more, its bound "
                f"(AGENTRUN_MAX_QUEUED_RUNS={self.max_queued}); retry later, or start the run on another instance",
            )
        ticket._granted = asyncio.get_running_loop().create_future()
        self._waiting[ticket.number] = ticket
        ticket.position = len(self._waiting)
        return ticket

    async def wait(self, ticket: Ticket) -> None:
        """Returns once `ticket` holds a slot. Cancelling the wait (or a timeout around it) leaves the ticket in the
        queue: call `leave` either way."""
        if ticket.admitted:
            return
        assert ticket._granted is not None, "a ticket that is not admitted was queued"
        await asyncio.shield(ticket._granted)

    def leave(self, ticket: Ticket) -> None:
        """The run is done with its ticket (finished, or gave up waiting): its slot goes to the next run in line, or
        its place in the queue is given up. Idempotent."""
        if ticket._left:
            return
        ticket._left = True
        if ticket.admitted:
            self._running -= 1
            self._admit_waiting()
        else:
            self._waiting.pop(ticket.number, None)

    def _admit_waiting(self) -> None:
        while self._running < self.max_running and self._waiting:
            _, ticket = self._waiting.popitem(last=False)
            self._running += 1
            ticket.admitted = True
            assert ticket._granted is not None
            if not ticket._granted.done():
                ticket._granted.set_result(None)
