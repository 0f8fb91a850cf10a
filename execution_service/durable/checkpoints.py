"""The checkpointed results of a durable run's calls (model calls, tool calls, publishing), in its journal.

A run numbers its operations in the order it reserves them (`Checkpoints.reserve`), which is the same on every
execution: a model call reserves its number when it is asked for, the tool calls of a turn reserve theirs in call
order as soon as the model's answer is recorded (effects.ToolStepReservations), before anything of the turn awaits.
An operation runs its call once: the result is pickled (as DBOS pickles a step's) into the journal under (run id,
number). A resumed run reads its recorded results once, when it starts (`Checkpoints.resume`), and each operation
that had completed returns its recorded result without making the call again; one recorded under another name means
the run no longer replays its recorded execution (ReplayDiverged: the run ends DURABLE_REPLAY_DIVERGED).

`Operation` has the shape of DBOS's StepReservation (`step_id`, `run_async(options, func, *args)`), which this
replaced: ~0.3 ms of CPU per checkpoint instead of ~3 ms per DBOS step (docs/performance.md).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Coroutine
from typing import Any, TypedDict, TypeVar

from execution_service.durable import journal
from execution_service.durable.recorder import ReplayDiverged

T = TypeVar("T")


class StepOptions(TypedDict):
    name: str


async def read_recorded_result(run_id: str, name: str) -> Any | None:
    """The result of the run's first recorded operation named `name`, read from the journal from outside the run
    (None when none); `Checkpoints.recorded_result` is the same for the run's own execution, from what it read."""
    value = await journal.current().checkpoint_named(run_id, name)
    return None if value is None else pickle.loads(value)  # written by this service, in its own database


class Checkpoints:
    def __init__(self, run_id: str, recorded: dict[int, tuple[str, bytes]] | None = None) -> None:
        """`recorded`: the results an earlier execution of the run recorded, by operation number."""
        self.run_id = run_id
        self._recorded = recorded or {}
        self._next = 0

    @classmethod
    async def resume(cls, run_id: str) -> Checkpoints:
        """The checkpoints of a run that may have run before (one read of what it recorded)."""
        return cls(run_id, await journal.current().checkpoints(run_id))

    def recorded_result(self, name: str) -> tuple[int, Any] | None:
        """The number and result of the run's first recorded operation named `name` (None when no execution recorded
        one): how a resumed run goes on from a point it recorded (the end its execution decided, execution_service.
        durable.manager) without running again what came before."""
        for operation, (recorded_name, value) in sorted(self._recorded.items()):
            if recorded_name == name:
                return operation, pickle.loads(value)  # written by this service, in its own database
        return None

    def at(self, operation: int) -> Operation:
        """Operation number `operation`, reserved by an earlier execution of the run (`recorded_result`)."""
        return Operation(self, operation)

    def reserve(self) -> Operation:
        """The run's next operation number (synchronous: call it in the order the run's execution decides)."""
        operation = Operation(self, self._next)
        self._next += 1
        return operation

    async def run(self, operation: int, name: str, func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        recorded = self._recorded.pop(operation, None)
        if recorded is not None:
            return self._replayed(operation, name, recorded)
        value = await func(*args)
        earlier = await journal.current().checkpoint(self.run_id, operation, name, pickle.dumps(value))
        # Another execution of the run recorded this operation first (which DBOS's recovery does not let happen):
        # its result is the run's, so both go on alike.
        return value if earlier is None else self._replayed(operation, name, earlier)

    def _replayed(self, operation: int, name: str, recorded: tuple[str, bytes]) -> Any:
        recorded_name, value = recorded
        if recorded_name != name:
            raise ReplayDiverged(
                f"operation {operation} of run {self.run_id} is {name} now but was {recorded_name} when it was recorded"
            )
        return pickle.loads(value)  # written by this service, in its own database


class Operation:
    """One reserved operation of a run (the shape of DBOS's StepReservation)."""

    def __init__(self, checkpoints: Checkpoints, step_id: int) -> None:
        self._checkpoints = checkpoints
        self.step_id = step_id

    async def run_async(self, options: StepOptions, func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Runs `func(*args)` once for the run: its recorded result when an earlier execution completed it."""
        return await self._checkpoints.run(self.step_id, options["name"], func, *args)
