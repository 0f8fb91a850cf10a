"""A stored run as conversation turns: its task, then each model turn with the results of the tools it called.

What the model said and asked for comes from the run's steps: a `ModelCall` step holds the text and the number of
function calls; the calls themselves are the `ToolCallStarted` steps that follow it, and their results the
`ToolCallFinished` steps (as stored: redacted, and capped at AGENTRUN_MAX_TOOL_RESULT_BYTES). A model call that
failed, and a model turn whose tool results were not all recorded (a cancelled run), make no turn.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from agentrun_core.domain import ExecutionStep, ModelCall, Run, ToolCallFinished, ToolCallStarted
from execution_service.engine.call_ids import model_given_id
from execution_service.engine.tool_calls import response_for_model, utf8_size
from execution_service.model.base import (
    FunctionCall,
    FunctionResult,
    Message,
    ModelMessage,
    ToolResultMessage,
    UserMessage,
)
from execution_service.tools.base import ToolOutcome
from execution_service.tools.naming import sanitize_function_name

log = logging.getLogger(__name__)

# Tokens are estimated, not counted: about four characters a token (Gemini's own rule of thumb for English).
CHARS_PER_TOKEN = 4

# The name the model sees for a stored tool call: (server, tool name) -> exposed name.
ToolNamer = Callable[[str, str], str]


def default_namer(server: str, tool: str) -> str:
    """The tool's own name, made a valid function name (an agent whose tools collide names them otherwise)."""
    return sanitize_function_name(tool)


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of a stored run: its task (`sequence` 0) or one model turn (`sequence` of its ModelCall step) with
    the results of the tools it called."""

    run_id: str
    sequence: int
    messages: tuple[Message, ...]
    tokens: int

    @property
    def is_task(self) -> bool:
        return self.sequence == 0


def estimate_tokens(messages: Sequence[Message]) -> int:
    """The estimated token count of `messages` (CHARS_PER_TOKEN characters a token, rounded up)."""
    chars = 0
    for message in messages:
        if isinstance(message, UserMessage):
            chars += len(message.text)
        elif isinstance(message, ModelMessage):
            chars += len(message.text)
            chars += sum(len(c.name) + len(orjson.dumps(c.arguments)) for c in message.function_calls)
        else:
            chars += sum(len(r.name) + len(orjson.dumps(r.response)) for r in message.results)
    return -(-chars // CHARS_PER_TOKEN)


def run_turns(run: Run, namer: ToolNamer = default_namer) -> list[Turn]:
    """The run's turns, in order: its task, then each complete model turn."""
    task = (UserMessage(run.task),)
    turns = [Turn(run.id, 0, task, estimate_tokens(task))]
    steps = run.execution_steps
    recorded: set[str] = set()
    for index, step in enumerate(steps):
        if not isinstance(step.payload, ModelCall):
            continue
        messages = model_turn(steps, index, namer)
        if messages is not None:
            messages = _as_given(messages, recorded)
            turns.append(Turn(run.id, step.sequence, messages, estimate_tokens(messages)))
    return turns


def _as_given(messages: tuple[Message, ...], recorded: set[str]) -> tuple[Message, ...]:
    """A stored turn's messages under the call ids the model gave (a repeated id was recorded as `<id>~<n>`:
    engine.call_ids); `recorded` holds the run's call ids so far, and gets this turn's."""
    given: dict[str, str] = {}
    for message in messages:
        if isinstance(message, ModelMessage):
            for call in message.function_calls:
                given[call.id] = model_given_id(call.id, recorded)
                recorded.add(call.id)
    if all(model_id == call_id for call_id, model_id in given.items()):
        return messages
    return tuple(_with_ids(message, given) for message in messages)


def _with_ids(message: Message, given: dict[str, str]) -> Message:
    if isinstance(message, ModelMessage):
        calls = tuple(dataclasses.replace(call, id=given[call.id]) for call in message.function_calls)
        return dataclasses.replace(message, function_calls=calls)
    if isinstance(message, ToolResultMessage):
        return ToolResultMessage(
            tuple(dataclasses.replace(r, call_id=given.get(r.call_id, r.call_id)) for r in message.results)
        )
    return message


def model_turn(steps: Sequence[ExecutionStep], index: int, namer: ToolNamer) -> tuple[Message, ...] | None:
    """The messages of the model call at `steps[index]`: the model's turn, and its tool results when it called
    tools. None for a failed call, or when a call's result is missing."""
    call = steps[index].payload
    assert isinstance(call, ModelCall)
    calls = function_calls_of(steps, index, namer)
    if not call.text and not calls:
        return None  # a failed model call (or an empty answer): nothing the model said
    model = ModelMessage(text=call.text, function_calls=calls)
    if not calls:
        return (model,)
    finished = {s.payload.call_id: s.payload for s in steps[index + 1 :] if isinstance(s.payload, ToolCallFinished)}
    if any(c.id not in finished for c in calls):
        return None
    results = tuple(function_result(c, finished[c.id]) for c in calls)
    return (model, ToolResultMessage(results))


def function_calls_of(steps: Sequence[ExecutionStep], index: int, namer: ToolNamer) -> tuple[FunctionCall, ...]:
    """The function calls the model call at `steps[index]` asked for: the ToolCallStarted steps after it, up to its
    function_call_count (they are recorded before the next model call)."""
    call = steps[index].payload
    assert isinstance(call, ModelCall)
    found: list[FunctionCall] = []
    for step in steps[index + 1 :]:
        if len(found) >= call.function_call_count or isinstance(step.payload, ModelCall):
            break
        if isinstance(step.payload, ToolCallStarted):
            found.append(function_call(step.payload, namer))
    return tuple(found)


def function_call(started: ToolCallStarted, namer: ToolNamer) -> FunctionCall:
    try:
        arguments = orjson.loads(started.arguments_json or "{}")
    except orjson.JSONDecodeError:
        log.warning("stored tool call arguments are not JSON", extra={"call_id": started.call_id})
        arguments = {}
    if not isinstance(arguments, dict):
        arguments = {"arguments": arguments}
    name = namer(started.server, started.tool_name) if started.server else started.tool_name
    return FunctionCall(id=started.call_id, name=name, arguments=arguments)


def function_result(call: FunctionCall, finished: ToolCallFinished) -> FunctionResult:
    """The function response as the model received it, rebuilt from the stored result (already capped)."""
    outcome = stored_outcome(finished)
    size = utf8_size(outcome.text)
    response = response_for_model(outcome, max(size, utf8_size(outcome.structured_json)), size)
    return FunctionResult(call_id=call.id, name=call.name, response=response, is_error=finished.is_error)


def stored_outcome(finished: ToolCallFinished) -> ToolOutcome:
    """A stored tool result as the outcome of a call."""
    return ToolOutcome(
        text=finished.result_text,
        structured_json=finished.result_json,
        is_error=finished.is_error,
        status=finished.status,
    )
