"""Conversions between the provider-neutral ModelRequest/ModelResponse and google-genai types."""

from __future__ import annotations

import enum
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, assert_never

import pydantic
from google.genai import types

from agentrun_core.domain import ErrorReason, TokenUsage
from agentrun_core.well_formed import well_formed, well_formed_value
from execution_service.model.base import (
    FunctionCall,
    FunctionResult,
    Message,
    ModelError,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolDeclaration,
    ToolResultMessage,
    UserMessage,
)

logger = logging.getLogger(__name__)

# Ids we make up for function calls the model sent without one. They are ours, not the model's: they are not sent
# back to Gemini (the model matches responses to calls by position and name then).
GENERATED_CALL_ID_PREFIX = "agentrun-fc-"

# Agent config keys (camelCase or snake_case) that map onto GenerateContentConfig fields.
GENERATION_CONFIG_FIELDS = frozenset(
    {
        "temperature",
        "top_p",
        "top_k",
        "candidate_count",
        "max_output_tokens",
        "stop_sequences",
        "presence_penalty",
        "frequency_penalty",
        "seed",
        "response_mime_type",
        "response_schema",
        "response_json_schema",
        "response_logprobs",
        "logprobs",
        "thinking_config",
        "safety_settings",
        "media_resolution",
        "response_modalities",
    }
)

_CAMEL_BOUNDARY = re.compile(r"(?<!^)(?=[A-Z])")


def snake_case(key: str) -> str:
    return _CAMEL_BOUNDARY.sub("_", key).lower()


def new_call_id() -> str:
    return f"{GENERATED_CALL_ID_PREFIX}{uuid.uuid4().hex}"


def _wire_call_id(call_id: str) -> str | None:
    return None if not call_id or call_id.startswith(GENERATED_CALL_ID_PREFIX) else call_id


# -- request -------------------------------------------------------------------------------------------------------


# Gemini 3 and later refuse a function call of the current turn without its thought signature (400 "Function call
# is missing a thought_signature"). A model turn rebuilt from a stored run (a session's history, a fork's replay) has
# lost it: such a turn carries the sentinel Google documents for turns it did not generate, which skips the check.
REBUILT_TURN_SIGNATURE = b"skip_thought_signature_validator"
_GEMINI_MAJOR = re.compile(r"gemini-(\d+)")


def needs_signatures(model: str) -> bool:
    """Whether `model` (a bare Gemini model name) checks the thought signatures of function calls (Gemini 3+)."""
    match = _GEMINI_MAJOR.match(model)
    return match is not None and int(match.group(1)) >= 3


def to_contents(messages: tuple[Message, ...], *, model: str) -> list[types.Content]:
    """A request's messages as contents. The media tools returned go to the model with the latest tool results only:
    it reads them when it decides what to do with them; earlier turns keep the text that summarises them, so requests
    stay within the API's inline size and do not pay for every screenshot again on every turn."""
    latest_results = max((i for i, m in enumerate(messages) if isinstance(m, ToolResultMessage)), default=-1)
    return [to_content(m, model=model, with_media=i == latest_results) for i, m in enumerate(messages)]


def to_content(message: Message, *, model: str = "", with_media: bool = False) -> types.Content:
    """`model`: the model the request goes to (it decides whether a rebuilt turn needs a signature); `with_media`:
    tool results carry their media (each after a text part naming the call it came from)."""
    match message:
        case UserMessage(text=text):
            return types.Content(role="user", parts=[types.Part(text=text)])
        case ModelMessage():
            if isinstance(message.provider_content, types.Content):
                return message.provider_content  # unchanged: keeps thought signatures
            return _rebuild_model_content(message, signed=needs_signatures(model))
        case ToolResultMessage(results=results):
            parts = [
                types.Part(
                    function_response=types.FunctionResponse(
                        id=_wire_call_id(result.call_id), name=result.name, response=result.response
                    )
                )
                for result in results
            ]
            if with_media:
                parts.extend(part for result in results for part in _media_parts(result))
            return types.Content(role="user", parts=parts)
        case _:
            assert_never(message)


def _media_parts(result: FunctionResult) -> list[types.Part]:
    """A result's media as inline parts beside the function responses (what Gemini 2.x and 3 both accept; Gemini 2.x
    refuses media inside a FunctionResponse), introduced by a text part naming the call."""
    if not result.media:
        return []
    kinds = ", ".join(media.mime_type for media in result.media)
    intro = types.Part(text=f"[what the {result.name} call ({result.call_id}) returned besides its response: {kinds}]")
    inline = [types.Part(inline_data=types.Blob(mime_type=m.mime_type, data=m.data)) for m in result.media]
    return [intro, *inline]


def _rebuild_model_content(message: ModelMessage, *, signed: bool = False) -> types.Content:
    """A model turn without the provider's own content. `signed`: its first function call (where Gemini puts the
    signature of parallel calls) carries REBUILT_TURN_SIGNATURE."""
    parts: list[types.Part] = [types.Part(text=message.text)] if message.text else []
    parts.extend(
        types.Part(
            function_call=types.FunctionCall(id=_wire_call_id(call.id), name=call.name, args=call.arguments),
            thought_signature=REBUILT_TURN_SIGNATURE if signed and index == 0 else None,
        )
        for index, call in enumerate(message.function_calls)
    )
    return types.Content(role="model", parts=parts or [types.Part(text="")])


def to_tools(tools: tuple[ToolDeclaration, ...]) -> list[types.Tool] | None:
    if not tools:
        return None
    declarations = [
        types.FunctionDeclaration(
            name=tool.name, description=tool.description, parameters_json_schema=tool.input_schema
        )
        for tool in tools
    ]
    return [types.Tool(function_declarations=declarations)]


def generation_fields(config: dict[str, Any], *, warned: set[str] | None = None) -> dict[str, Any]:
    """Agent config (camelCase keys) -> GenerateContentConfig keyword arguments; unknown keys are dropped."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = snake_case(key)
        if name in GENERATION_CONFIG_FIELDS:
            out[name] = value
        elif warned is None or key not in warned:
            logger.warning("ignoring unknown generation config key %r (value %r)", key, value)
            if warned is not None:
                warned.add(key)
    return out


def asks_for_thoughts(config: types.GenerateContentConfig) -> bool:
    """The request asks for thought summaries (thinkingConfig.includeThoughts)."""
    return bool(config.thinking_config is not None and config.thinking_config.include_thoughts)


def to_config(request: ModelRequest, *, warned: set[str] | None = None) -> types.GenerateContentConfig:
    fields = generation_fields(request.config, warned=warned)
    if fields.get("candidate_count", 1) != 1:
        # Agent files are checked when loaded (execution_service.agents.gen_config); this guards other callers.
        raise ModelError(
            ErrorReason.MODEL_REQUEST_INVALID,
            f"candidateCount must be 1 (the agent loop follows one conversation), got {fields['candidate_count']!r}",
        )
    try:
        return types.GenerateContentConfig.model_validate(
            {
                **fields,
                "system_instruction": request.system_instruction or None,
                "tools": to_tools(request.tools),
                "automatic_function_calling": types.AutomaticFunctionCallingConfig(disable=True),
            }
        )
    except pydantic.ValidationError as exc:
        raise ModelError(
            ErrorReason.MODEL_REQUEST_INVALID,
            f"invalid generation config for model {request.model}: {exc}",
        ) from exc


# -- response ------------------------------------------------------------------------------------------------------


def _enum_text(value: Any) -> str:
    if value is None:
        return ""
    return str(value.value) if isinstance(value, enum.Enum) else str(value)


def to_token_usage(usage: types.GenerateContentResponseUsageMetadata | None) -> TokenUsage:
    """Counts the API left out are 0 (TokenUsage has no "unknown"). A missing totalTokenCount is the sum of the
    counts that were sent (prompt + candidates + thoughts + tool-use prompt; cached tokens are part of prompt)."""
    if usage is None:
        return TokenUsage()
    total = usage.total_token_count
    if total is None:
        total = sum(
            count or 0
            for count in (
                usage.prompt_token_count,
                usage.candidates_token_count,
                usage.thoughts_token_count,
                usage.tool_use_prompt_token_count,
            )
        )
    return TokenUsage(
        input_tokens=usage.prompt_token_count or 0,
        output_tokens=usage.candidates_token_count or 0,
        total_tokens=total,
        cached_tokens=usage.cached_content_token_count or 0,
        thinking_tokens=usage.thoughts_token_count or 0,
        tool_use_prompt_tokens=usage.tool_use_prompt_token_count or 0,
    )


_COUNT_FIELDS = frozenset(
    {
        "prompt_token_count",
        "candidates_token_count",
        "cached_content_token_count",
        "thoughts_token_count",
        "tool_use_prompt_token_count",
    }
)


def merge_usage(
    previous: types.GenerateContentResponseUsageMetadata | None,
    latest: types.GenerateContentResponseUsageMetadata | None,
) -> types.GenerateContentResponseUsageMetadata | None:
    """Streams report cumulative snapshots: the latest value of each count wins; counts are never added.

    An earlier total is not kept when the latest snapshot has counts but no total: it would be stale, so the total
    is then computed from the merged counts (to_token_usage)."""
    if previous is None or latest is None:
        return latest or previous
    merged = {name: value for name, value in latest if value is not None}
    if latest.total_token_count is None and any(name in _COUNT_FIELDS for name in merged):
        merged["total_token_count"] = None
    return previous.model_copy(update=merged)


def _is_plain_text(part: types.Part) -> bool:
    return part.text is not None and part.function_call is None and part.function_response is None


def _merge_part(parts: list[types.Part], part: types.Part) -> None:
    """Appends a streamed part, joining consecutive text pieces into one part (keeping any thought signature)."""
    if parts and _is_plain_text(part) and _is_plain_text(parts[-1]):
        last = parts[-1]
        same_kind = bool(last.thought) == bool(part.thought)
        if same_kind and not (last.thought_signature and part.thought_signature):
            parts[-1] = last.model_copy(
                update={
                    "text": (last.text or "") + (part.text or ""),
                    "thought_signature": last.thought_signature or part.thought_signature,
                }
            )
            return
    parts.append(part)


def _first_candidate(candidates: list[types.Candidate] | None) -> types.Candidate | None:
    """The candidate with index 0 (an absent index means 0). The loop follows one conversation: with more than one
    candidate (which agent files cannot ask for) the others are ignored, and never merged into this one."""
    return next((candidate for candidate in candidates or () if not candidate.index), None)


@dataclass
class ResponseAccumulator:
    """Collects one model turn from a full response or from stream chunks. Thought summaries are kept only when the
    request asked for them (`include_thoughts`); they are never answer text."""

    model: str
    include_thoughts: bool = False
    parts: list[types.Part] = field(default_factory=list)
    usage: types.GenerateContentResponseUsageMetadata | None = None
    finish_reason: str = ""
    finish_message: str = ""
    block_reason: str | None = None
    block_message: str = ""
    chunks: int = 0
    candidate_seen: bool = False

    def add(self, response: types.GenerateContentResponse) -> bool:
        """Adds a response or chunk; returns True when it carried content (text, thoughts or function calls)."""
        self.chunks += 1
        self.usage = merge_usage(self.usage, response.usage_metadata)
        feedback = response.prompt_feedback
        if feedback is not None and feedback.block_reason is not None:
            self.block_reason = _enum_text(feedback.block_reason)
            self.block_message = feedback.block_reason_message or self.block_message
        candidate = _first_candidate(response.candidates)
        if candidate is None:
            return False
        self.candidate_seen = True
        if candidate.finish_reason is not None:
            self.finish_reason = _enum_text(candidate.finish_reason)
        if candidate.finish_message:
            # google-genai 3.6.1 drops the Gemini API's finishMessage while converting the response; kept here for
            # the SDK versions (and backends) that carry it.
            self.finish_message = candidate.finish_message
        new_parts = (candidate.content.parts if candidate.content else None) or []
        for part in new_parts:
            _merge_part(self.parts, part)
        return any(part.text or part.function_call is not None for part in new_parts)

    def build(self, time_to_first_token: timedelta | None = None) -> ModelResponse:
        # What the run records and streams is well formed (agentrun_core.well_formed); `provider_content`, which goes
        # back to the model as the conversation's history, is the response as it came.
        text = well_formed("".join(part.text or "" for part in self.parts if _is_plain_text(part) and not part.thought))
        calls = tuple(
            FunctionCall(
                id=part.function_call.id or new_call_id(),
                name=well_formed(part.function_call.name or ""),
                arguments=well_formed_value(dict(part.function_call.args or {})),
            )
            for part in self.parts
            if part.function_call is not None
        )
        blocked = self.block_reason if self.block_reason and not self.parts else None
        thoughts = (
            well_formed("\n\n".join(part.text for part in self.parts if part.thought and part.text))
            if self.include_thoughts
            else ""
        )
        return ModelResponse(
            model=self.model,
            text=text,
            function_calls=calls,
            usage=to_token_usage(self.usage),
            finish_reason=self.finish_reason,
            time_to_first_token=time_to_first_token,
            blocked_reason=blocked,
            provider_content=types.Content(role="model", parts=list(self.parts)) if self.parts else None,
            finish_message=well_formed(self.finish_message or (self.block_message if blocked else "")),
            no_candidates=not self.candidate_seen and blocked is None,
            thoughts=thoughts,
        )
