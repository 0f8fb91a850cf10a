"""A session's history: the turns of its earlier runs that fit in the agent's token limit, oldest dropped first.

The history always starts with a run's task (a conversation the model receives starts with a user turn, and a
model turn that called tools needs what came before it), so turns are dropped oldest first up to the next task
that lets the rest fit: a run's turns are kept or dropped together. What was kept and dropped is the run's first
step, `SessionHistory`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentrun_core.domain import SessionHistory, SessionTurn
from execution_service.history.transcript import Turn
from execution_service.model.base import Message


@dataclass(frozen=True, slots=True)
class LoadedHistory:
    """The messages a run of the session starts with (before its own prompt), and the step that records them."""

    messages: tuple[Message, ...]
    step: SessionHistory


@dataclass(frozen=True, slots=True)
class UnreadRun:
    """An older run of the session whose steps were not read: it cannot be in the history (the newer runs already
    fill it), so it is dropped whole; `turns` is its task and model calls (from its BASIC view)."""

    run_id: str
    turns: int


def fit_history(
    session_id: str, runs: Sequence[Sequence[Turn]], token_limit: int, unread: Sequence[UnreadRun] = ()
) -> LoadedHistory:
    """The turns of `runs` (each run's turns, oldest run first) that fit in `token_limit` estimated tokens; `unread`
    are the session's runs before those (oldest first), dropped."""
    turns = [turn for run in runs for turn in run]
    total = sum(t.tokens for t in turns)
    start = 0
    while start < len(turns) and (total > token_limit or not turns[start].is_task):
        total -= turns[start].tokens
        start += 1
    kept, dropped = turns[start:], turns[:start]
    kept_runs = list(dict.fromkeys(t.run_id for t in kept))
    dropped_runs = [r.run_id for r in unread]
    dropped_runs += [run_id for run_id in dict.fromkeys(t.run_id for t in dropped) if run_id not in kept_runs]
    step = SessionHistory(
        session_id=session_id,
        run_ids=tuple(kept_runs),
        turn_count=len(kept),
        first_turn=SessionTurn(kept[0].run_id, kept[0].sequence) if kept else None,
        dropped_turn_count=len(dropped) + sum(r.turns for r in unread),
        dropped_run_ids=tuple(dropped_runs),
        token_limit=token_limit,
        token_count=total,
    )
    return LoadedHistory(tuple(m for t in kept for m in t.messages), step)
