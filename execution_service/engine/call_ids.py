"""Tool call ids that are unique within a run.

The model names its function calls. Gemini sends no ids (the provider then makes unique ones), but a model or a
proxy may repeat its own, e.g. numbering each turn's calls `call_0`, `call_1`, ... again. A run keys a call's steps,
its summary row, its sub-agent run and its idempotency key by the call id, so a repeated id is recorded under a new
one, `<id>~<n>` (the smallest n >= 2 not used yet), while the conversation sent back to the model keeps the ids it
gave. Renaming depends only on the run's calls in order, so a resumed (durable) or forked run renames alike; a
conversation rebuilt from a stored run (a fork's replay, a session's history) maps `<id>~<n>` back to `<id>`
(`model_given_id`), so the model sees the ids it gave there too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Container
from dataclasses import dataclass, field

from execution_service.model.base import FunctionCall, ModelMessage, ModelResponse, ToolResultMessage


@dataclass
class RunCallIds:
    """The call ids one run has recorded, and the model's own id of each call recorded under another."""

    _recorded: set[str] = field(default_factory=set)
    _given: dict[str, str] = field(default_factory=dict)

    def recorded(self, response: ModelResponse) -> ModelResponse:
        """`response` with each function call under an id no earlier call of the run has (most keep their own)."""
        calls = tuple(self._unique(call) for call in response.function_calls)
        if calls == response.function_calls:
            return response
        return dataclasses.replace(response, function_calls=calls)

    def as_given(self, turn: ModelMessage, results: ToolResultMessage) -> tuple[ModelMessage, ToolResultMessage]:
        """A turn and its results as they go back to the model: under the call ids the model gave."""
        if not self._given:
            return turn, results
        calls = tuple(dataclasses.replace(c, id=self._given.get(c.id, c.id)) for c in turn.function_calls)
        answers = tuple(dataclasses.replace(r, call_id=self._given.get(r.call_id, r.call_id)) for r in results.results)
        return dataclasses.replace(turn, function_calls=calls), ToolResultMessage(answers)

    def _unique(self, call: FunctionCall) -> FunctionCall:
        if call.id not in self._recorded:
            given = model_given_id(call.id, self._recorded)  # a fork's replayed call, recorded renamed
            if given != call.id:
                self._given[call.id] = given
            self._recorded.add(call.id)
            return call
        n = 2
        while f"{call.id}~{n}" in self._recorded:
            n += 1
        unique = f"{call.id}~{n}"
        self._recorded.add(unique)
        self._given[unique] = call.id
        return dataclasses.replace(call, id=unique)


def model_given_id(call_id: str, earlier: Container[str]) -> str:
    """The id the model gave the call recorded as `call_id`: `<id>` for `<id>~<n>` when `<id>` is the id of an
    earlier call of the same run (`earlier`), else `call_id` itself."""
    base, tilde, number = call_id.rpartition("~")
    return base if tilde and number.isdigit() and base in earlier else call_id
