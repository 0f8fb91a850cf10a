"""TestModel: a deterministic model without network, in the spirit of pydantic-ai's TestModel.

First turn (no tool results since the last user message): call each offered tool once (or those named in
`call_tools`), all in one turn, with arguments generated from the tool's JSON schema. Next turn: answer with a
summary of the tool results ("Called N tools: a -> <result>; ...") and finish reason STOP. Without tools it
answers at once, echoing the task. Usage is synthetic but realistic (about one token per four characters), so
token sums are non-zero and deterministic. It declares an input token limit of its own (TEST_MODEL_INPUT_TOKEN_LIMIT,
or `input_token_limit`), so runs on it record a context window share too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Literal

from agentrun_core.domain import TokenUsage
from execution_service.model.base import (
    FunctionCall,
    FunctionResult,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolResultMessage,
    UserMessage,
)
from execution_service.model.schema_examples import example_arguments

logger = logging.getLogger(__name__)

RESULT_PREVIEW_CHARS = 200
# The context window TestModel declares (its prompts are counted at about one token per four characters).
TEST_MODEL_INPUT_TOKEN_LIMIT = 32_768


def approx_tokens(chars: int) -> int:
    return max(1, -(-chars // 4))


def result_text(result: FunctionResult) -> str:
    """The text a tool result shows the model: the "result"/"error" value, else the response as JSON."""
    for key in ("result", "error"):
        if key in result.response and len(result.response) == 1:
            value = result.response[key]
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            return " ".join(text.split()) if key == "result" else f"error: {' '.join(text.split())}"
    return json.dumps(result.response, ensure_ascii=False, sort_keys=True, default=str)


def _request_chars(request: ModelRequest) -> int:
    chars = len(request.system_instruction or "")
    chars += sum(len(t.name) + len(t.description) + len(json.dumps(t.input_schema)) for t in request.tools)
    for message in request.messages:
        match message:
            case UserMessage(text=text):
                chars += len(text)
            case ModelMessage(text=text, function_calls=calls):
                chars += len(text) + sum(len(c.name) + len(json.dumps(c.arguments)) for c in calls)
            case ToolResultMessage(results=results):
                chars += sum(len(r.name) + len(json.dumps(r.response, default=str)) for r in results)
    return chars


class TestModel:
    """ModelProvider that needs no network. `name` is "test"."""

    __test__ = False  # not a pytest test class
    name = "test"

    def __init__(
        self,
        *,
        call_tools: list[str] | Literal["all"] = "all",
        final_text: str | None = None,
        latency_s: float = 0.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        input_token_limit: int = TEST_MODEL_INPUT_TOKEN_LIMIT,
    ) -> None:
        self.input_token_limit = input_token_limit
        self.call_tools = call_tools
        self.final_text = final_text
        self.latency_s = latency_s
        self._sleep = sleep

    async def generate(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        if self.latency_s > 0:
            await self._sleep(self.latency_s)
        results = self._results_since_last_user_message(request)
        calls: tuple[FunctionCall, ...] = ()
        if results is None:
            calls = self._function_calls(request)
            text = "" if calls else (self.final_text if self.final_text is not None else self._echo(request))
        else:
            text = self.final_text if self.final_text is not None else self._summary(results)
        output_chars = len(text) + sum(len(c.name) + len(json.dumps(c.arguments)) for c in calls)
        input_tokens = approx_tokens(_request_chars(request))
        output_tokens = approx_tokens(output_chars)
        logger.debug("TestModel turn: %d function calls, %d chars of text", len(calls), len(text))
        return ModelResponse(
            model=request.model,
            text=text,
            function_calls=calls,
            usage=TokenUsage(
                input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=input_tokens + output_tokens
            ),
            finish_reason="STOP",
            time_to_first_token=timedelta(seconds=time.perf_counter() - started),
            input_token_limit=self.input_token_limit,
        )

    @staticmethod
    def _results_since_last_user_message(request: ModelRequest) -> list[FunctionResult] | None:
        results: list[FunctionResult] = []
        seen_tool_results = False
        for message in reversed(request.messages):
            if isinstance(message, UserMessage):
                break
            if isinstance(message, ToolResultMessage):
                seen_tool_results = True
                results[:0] = message.results
        return results if seen_tool_results else None

    def _function_calls(self, request: ModelRequest) -> tuple[FunctionCall, ...]:
        offered = [t for t in request.tools if self.call_tools == "all" or t.name in self.call_tools]
        if self.call_tools != "all":
            missing = sorted(set(self.call_tools) - {t.name for t in request.tools})
            if missing:
                logger.warning("TestModel: tools %s are not offered in this request", missing)
        prior_calls = sum(len(m.function_calls) for m in request.messages if isinstance(m, ModelMessage))
        return tuple(
            FunctionCall(
                id=f"test-call-{prior_calls + i}", name=tool.name, arguments=example_arguments(tool.input_schema)
            )
            for i, tool in enumerate(offered, start=1)
        )

    @staticmethod
    def _summary(results: list[FunctionResult]) -> str:
        parts = [f"{r.name} -> {result_text(r)[:RESULT_PREVIEW_CHARS]}" for r in results]
        return f"Called {len(results)} tools: " + "; ".join(parts)

    @staticmethod
    def _echo(request: ModelRequest) -> str:
        task = next((m.text for m in reversed(request.messages) if isinstance(m, UserMessage)), "")
        return f"Echo: {task}"
