"""The model-provider interface: what the agent loop needs from any model, and nothing provider-specific.

A provider turns a `ModelRequest` (conversation so far + tools) into one `ModelResponse` (one model turn).
Providers raise `ModelError` for failures; `retryable` says whether the single retry layer
(`execution_service.model.retry`) may try again. Providers themselves never retry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from agentrun_core.domain import ErrorReason, ModelAttempt, TokenUsage


@dataclass(frozen=True, slots=True)
class ToolDeclaration:
    """A tool as the model sees it. `name` is unique within a request; the schema is the MCP input schema as is."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FunctionCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True, slots=True)
class UserMessage:
    text: str


@dataclass(frozen=True, slots=True)
class ModelMessage:
    """A model turn as it goes back into the history. `provider_content` is the provider's own object for the
    turn (e.g. google.genai types.Content); a provider echoes it back unchanged so signatures are preserved."""

    text: str
    function_calls: tuple[FunctionCall, ...] = ()
    provider_content: Any = None


@dataclass(frozen=True, slots=True)
class ToolResultMessage:
    """Results of the function calls of one model turn, in call order."""

    results: tuple[FunctionResult, ...]


@dataclass(frozen=True, slots=True)
class InlineMedia:
    """Bytes the model reads as they are (an image, audio, a PDF), with their IANA MIME type."""

    mime_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class FunctionResult:
    call_id: str
    name: str
    # What the model receives: {"result": ...} on success, {"error": "..."} on failure.
    response: dict[str, Any]
    is_error: bool = False
    # The media the tool returned that the model can read (tools.results), sent beside the response.
    media: tuple[InlineMedia, ...] = ()


Message = UserMessage | ModelMessage | ToolResultMessage


def without_media(messages: tuple[Message, ...]) -> tuple[Message, ...]:
    """The messages with the tool results' media left out (their text summaries stay): a request sends only the
    latest results' media (model.gemini_convert.to_contents), so a run need not hold older ones."""
    if not any(isinstance(m, ToolResultMessage) and any(r.media for r in m.results) for m in messages):
        return messages
    return tuple(
        ToolResultMessage(tuple(dataclasses.replace(r, media=()) for r in m.results))
        if isinstance(m, ToolResultMessage)
        else m
        for m in messages
    )


@dataclass(frozen=True, slots=True)
class ModelRequest:
    model: str
    messages: tuple[Message, ...]
    system_instruction: str | None = None
    tools: tuple[ToolDeclaration, ...] = ()
    # Generation config from the agent's front matter (temperature, maxOutputTokens, topP, ...), camelCase keys.
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ModelResponse:
    model: str
    text: str
    function_calls: tuple[FunctionCall, ...]
    usage: TokenUsage
    # The provider's finish reason as text, e.g. "STOP", "MAX_TOKENS", "SAFETY"; "" when none was given.
    finish_reason: str
    time_to_first_token: timedelta | None = None
    # Set when the provider refused the prompt (e.g. Gemini promptFeedback.blockReason).
    blocked_reason: str | None = None
    provider_content: Any = None
    # The provider's own explanation of the finish reason or of the block, when it gave one (Gemini
    # candidate.finishMessage, promptFeedback.blockReasonMessage).
    finish_message: str = ""
    # True when the provider answered with no candidate at all (and did not say the prompt was blocked).
    no_candidates: bool = False
    # The model's thought summaries (only sent when the request's config asks for them: includeThoughts).
    thoughts: str = ""
    # The model's input token limit, as the provider knows it (0: unknown).
    input_token_limit: int = 0
    # The attempts that failed before this answer (set by the retry layer, execution_service.model.retry).
    failed_attempts: tuple[ModelAttempt, ...] = ()

    def as_message(self) -> ModelMessage:
        return ModelMessage(text=self.text, function_calls=self.function_calls, provider_content=self.provider_content)


class ModelError(Exception):
    """A model call failed. `code` is the provider's HTTP/status code when there is one.

    `retry_after_s` is the provider's own retry delay hint (e.g. a 429's google.rpc.RetryInfo), when it gave one.
    """

    def __init__(
        self,
        reason: ErrorReason,
        message: str,
        *,
        code: int | None = None,
        status: str = "",
        retryable: bool = False,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code
        self.status = status
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        # Every attempt of the call, this one included as the last (set by the retry layer when it gives up).
        self.attempts: tuple[ModelAttempt, ...] = ()

    def describe(self) -> str:
        prefix = " ".join(str(part) for part in (self.code, self.status) if part)
        return f"{prefix}: {self.message}" if prefix else self.message


class ProviderNotConfigured(ModelError):
    """The model needs a provider this service is not configured for (e.g. Gemini without GEMINI_API_KEY): a
    problem of the deployment, not of the request."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorReason.MODEL_REQUEST_INVALID, message)


class ModelProvider(Protocol):
    """Generates one model turn. Implementations: GeminiProvider, TestModel."""

    name: str

    async def generate(self, request: ModelRequest) -> ModelResponse: ...
