"""How a client steers a run in progress, besides cancelling its task: shared by the run's loop and its LiveRun."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunControl:
    """Set by CancelRun(AFTER_TURN): the loop stops before the next model call."""

    stop_after_turn: bool = False
