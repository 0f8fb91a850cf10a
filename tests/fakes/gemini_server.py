"""A local fake of the Gemini REST API (generateContent and streamGenerateContent) for tests and benchmarks.

The fake runs uvicorn + starlette in its own thread with its own event loop, so both the sync and the async
google-genai clients can talk to it from any thread. Point a client at it with
`HttpOptions(base_url=fake.base_url)`; it routes `POST /{version}/models/{model}:{action}`.

Scripting: queue turns with `fake.add(...)`; each request takes the next one:
- `FakeResponse` — a model turn: text and/or function calls, a thought summary (`thought: true` part), thought
  signature, finish reason and finishMessage, usage (any count may be left out, totalTokenCount too), a prompt
  block reason (+ blockReasonMessage), a candidate without content, further candidates with their `index`;
- `FakeRaw` — a response body (or, for streams, the SSE chunks) sent verbatim, e.g. `{}`;
- `FakeError` — an HTTP error with a Google-style JSON body `{"error": {"code", "message", "status"}}`;
- `FakeDelay` — wait this long, then answer with the next queued turn (for timeouts and latency).
Or install a responder (`fake.set_responder(fn)`): a callable receiving the parsed request JSON and returning the
turn, used when the queue is empty. Without either, the fake answers 400 FAILED_PRECONDITION so a test fails loudly.

Like the real API, a turn's thought summary (`FakeResponse.thought`) is only sent when the request asks for it
(`generationConfig.thinkingConfig.includeThoughts`); thought signatures are sent either way.

`GET /{version}/models/{model}` answers the model's metadata (`inputTokenLimit`, `outputTokenLimit`) from
`fake.models` (real Gemini 2.x limits by default; set or delete entries per test), 404 NOT_FOUND for others; each
lookup is counted in `fake.model_lookups`.

Every request is recorded (`fake.requests`) with its path, model, action and JSON body; `fake.in_flight` counts the
requests being answered now and `fake.max_in_flight` the most at once (a concurrency limit's proof). The SDK sends
some fields in snake_case (e.g. `parameters_json_schema`) and others in camelCase; `RecordedRequest` accessors
accept both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import itertools
import json
import logging
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

logger = logging.getLogger(__name__)

_STATUS_TEXT = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


@dataclass(frozen=True)
class FakeFunctionCall:
    name: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "args": self.args}
        if self.id is not None:
            out["id"] = self.id
        return out


@dataclass(frozen=True)
class FakeUsage:
    """usageMetadata counts; None leaves the field out (as Gemini does). `total` defaults to the sum;
    `send_total=False` leaves totalTokenCount out even though other counts are there."""

    prompt: int | None = None
    candidates: int | None = None
    total: int | None = None
    cached: int | None = None
    thoughts: int | None = None
    tool_use_prompt: int | None = None
    send_total: bool = True

    def to_json(self) -> dict[str, int]:
        total = self.total
        if not self.send_total:
            total = None
        elif total is None:
            total = sum(v or 0 for v in (self.prompt, self.candidates, self.thoughts, self.tool_use_prompt))
        values = {
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.candidates,
            "totalTokenCount": total,
            "cachedContentTokenCount": self.cached,
            "thoughtsTokenCount": self.thoughts,
            "toolUsePromptTokenCount": self.tool_use_prompt,
        }
        return {k: v for k, v in values.items() if v is not None}

    def snapshot(self, fraction: float) -> FakeUsage:
        """An intermediate cumulative snapshot of a stream: prompt counts whole, output counts partial."""

        def part(value: int | None) -> int | None:
            return None if value is None else int(value * fraction)

        candidates, thoughts = part(self.candidates), part(self.thoughts)
        total = sum(v or 0 for v in (self.prompt, candidates, thoughts, self.tool_use_prompt))
        return FakeUsage(
            self.prompt, candidates, total, self.cached, thoughts, self.tool_use_prompt, send_total=self.send_total
        )


@dataclass(frozen=True)
class FakeCandidate:
    """A further candidate of a response (candidateCount > 1), sent with `index` 1, 2, ... in order."""

    text: str = ""
    finish_reason: str | None = "STOP"


@dataclass(frozen=True)
class FakeResponse:
    """One scripted model turn (candidate 0, plus any `other_candidates`)."""

    text: str = ""
    function_calls: tuple[FakeFunctionCall, ...] | list[FakeFunctionCall] = ()
    finish_reason: str | None = "STOP"
    # candidate.finishMessage: the API's explanation of the finish reason.
    finish_message: str | None = None
    usage: FakeUsage | None = None
    # promptFeedback.blockReason (+ blockReasonMessage); when set the response has no candidates.
    block_reason: str | None = None
    block_reason_message: str | None = None
    # A thought summary: a `{"text": ..., "thought": true}` part before the answer, sent only when the request asks
    # for thoughts (thinkingConfig.includeThoughts), like the real API.
    thought: str = ""
    # Base64 thoughtSignature, put on the first function call part (else on the last text part).
    thought_signature: str | None = None
    # The candidate carries no `content` at all (only finishReason / finishMessage / index).
    no_content: bool = False
    # Candidates 1..n. In a stream each candidate's pieces come in chunks of their own, interleaved with candidate 0's.
    other_candidates: tuple[FakeCandidate, ...] = ()
    # Leave `index` out of candidate 0 (absent means 0).
    omit_index: bool = False
    # Streaming: how many chunks the text is split into, and a pause between chunks.
    stream_chunks: int = 3
    chunk_delay_s: float = 0.0
    # Seconds to wait before answering.
    delay_s: float = 0.0


@dataclass(frozen=True)
class FakeError:
    """An HTTP error answer with a Google-style JSON body."""

    status: int
    message: str = "scripted error"
    status_text: str | None = None
    # Adds a google.rpc.RetryInfo detail with this retryDelay.
    retry_delay_s: float | None = None
    # Adds a google.rpc.QuotaFailure detail naming this quota (as the API does for a 429: a per-minute or per-day one).
    quota_id: str | None = None
    # Adds a google.rpc.ErrorInfo detail with this reason (the API's API_KEY_INVALID for a bad key).
    error_info_reason: str | None = None
    delay_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message,
            "status": self.status_text or _STATUS_TEXT.get(self.status, "UNKNOWN"),
        }
        details: list[dict[str, Any]] = []
        if self.quota_id is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                            "quotaId": self.quota_id,
                            "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
                            "quotaValue": "250",
                        }
                    ],
                }
            )
        if self.error_info_reason is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": self.error_info_reason,
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        if self.retry_delay_s is not None:
            details.append(
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{self.retry_delay_s}s"}
            )
        if details:
            error["details"] = details
        return {"error": error}


@dataclass(frozen=True)
class FakeDelay:
    """Wait `seconds`, then answer the same request with the next queued turn."""

    seconds: float


@dataclass(frozen=True)
class FakeRaw:
    """A 200 answer sent verbatim: `body` for generateContent; for streamGenerateContent each of `chunks`
    (default: just `body`) is one SSE event."""

    body: dict[str, Any] = field(default_factory=dict)
    chunks: tuple[dict[str, Any], ...] | None = None
    delay_s: float = 0.0


Turn = FakeResponse | FakeError | FakeRaw
ScriptItem = FakeResponse | FakeError | FakeRaw | FakeDelay
Responder = Callable[[dict[str, Any]], Turn | Awaitable[Turn]]


def function_results_in(body: dict[str, Any]) -> int:
    """How many function results (tool call answers) a request's conversation carries: a responder that decides its
    turn by them answers a repeated model call as the first time, so the repeat shows as one more request."""
    return sum(
        1
        for content in body.get("contents") or []
        for part in content.get("parts") or []
        if "functionResponse" in part or "function_response" in part
    )


def system_text_in(body: dict[str, Any]) -> str:
    """The text of a request's system instruction (the REST API's camelCase or snake_case spelling)."""
    instruction = body.get("systemInstruction") or body.get("system_instruction") or {}
    return "".join(part.get("text", "") for part in instruction.get("parts") or [])


def _get(mapping: dict[str, Any], camel: str, snake: str, default: Any = None) -> Any:
    if camel in mapping:
        return mapping[camel]
    return mapping.get(snake, default)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    version: str
    model: str
    action: str
    stream: bool
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def contents(self) -> list[dict[str, Any]]:
        return list(self.body.get("contents") or [])

    @property
    def system_instruction(self) -> dict[str, Any] | None:
        value = _get(self.body, "systemInstruction", "system_instruction")
        return value if isinstance(value, dict) else None

    @property
    def system_text(self) -> str:
        return system_text_in(self.body)

    @property
    def generation_config(self) -> dict[str, Any]:
        return dict(_get(self.body, "generationConfig", "generation_config", {}) or {})

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools") or [])

    @property
    def function_declarations(self) -> list[dict[str, Any]]:
        return [
            decl
            for tool in self.tools
            for decl in (_get(tool, "functionDeclarations", "function_declarations", []) or [])
        ]

    def declaration_schema(self, name: str) -> dict[str, Any] | None:
        for decl in self.function_declarations:
            if decl.get("name") == name:
                schema = _get(decl, "parametersJsonSchema", "parameters_json_schema")
                return schema if schema is not None else decl.get("parameters")
        return None

    def parts(self, content_index: int) -> list[dict[str, Any]]:
        return list(self.contents[content_index].get("parts") or [])

    @property
    def roles(self) -> list[str]:
        return [content.get("role", "") for content in self.contents]

    def function_response(self, call_id: str) -> dict[str, Any]:
        """The functionResponse ({id, name, response}) this request sent back for the call `call_id`."""
        for content in self.contents:
            for part in content.get("parts") or []:
                response = _get(part, "functionResponse", "function_response")
                if isinstance(response, dict) and response.get("id") == call_id:
                    return response
        raise AssertionError(f"no functionResponse for call {call_id!r} in request {self.path}: {self.contents}")


def part_field(part: dict[str, Any], camel: str, snake: str) -> Any:
    """A field of a request part in either spelling (e.g. functionResponse / function_response)."""
    return _get(part, camel, snake)


def _split_text(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    pieces = max(1, min(pieces, len(text)))
    size = -(-len(text) // pieces)
    return [text[i : i + size] for i in range(0, len(text), size)]


# inputTokenLimit / outputTokenLimit as the Gemini API reports them.
DEFAULT_MODEL_LIMITS: dict[str, tuple[int, int]] = {
    "gemini-2.5-flash": (1_048_576, 65_536),
    "gemini-2.5-pro": (1_048_576, 65_536),
    "gemini-2.5-flash-lite": (1_048_576, 65_536),
    "gemini-2.0-flash": (1_048_576, 8_192),
}


def _include_thoughts(body: dict[str, Any]) -> bool:
    config = _get(body, "generationConfig", "generation_config", {}) or {}
    thinking = _get(config, "thinkingConfig", "thinking_config", {}) or {}
    return bool(_get(thinking, "includeThoughts", "include_thoughts", False))


class FakeGemini:
    """A scripted Gemini REST API on 127.0.0.1:<free port>, served from its own thread."""

    def __init__(self, *, responder: Responder | None = None, latency_s: float = 0.0) -> None:
        # Model metadata served by GET models/{model}: (inputTokenLimit, outputTokenLimit).
        self.models: dict[str, tuple[int, int]] = dict(DEFAULT_MODEL_LIMITS)
        self.model_lookups: Counter[str] = Counter()
        self._script: deque[ScriptItem] = deque()
        self._responder = responder
        self._latency_s = latency_s
        self._requests: list[RecordedRequest] = []
        # Model requests being answered right now (from arrival until the answer is ready, latency and delays
        # included), and the most there ever were at once: what a concurrency limit must hold.
        self.in_flight = 0
        self.max_in_flight = 0
        # (arrival, answer ready) of every model request, time.monotonic(): concurrency across several fakes.
        self.spans: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_error: BaseException | None = None
        self.base_url = ""

    # -- scripting -----------------------------------------------------------------------------------------------

    def add(self, *items: ScriptItem) -> FakeGemini:
        with self._lock:
            self._script.extend(items)
        return self

    def set_responder(self, responder: Responder | None) -> None:
        self._responder = responder

    def reset(self) -> None:
        """Forgets scripted turns, recorded requests and the responder (to share one server between tests)."""
        with self._lock:
            self._script.clear()
            self._requests.clear()
            self.model_lookups.clear()
            self.max_in_flight = self.in_flight
            self.spans.clear()
            self.models = dict(DEFAULT_MODEL_LIMITS)
        self._responder = None

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start_sync(self) -> str:
        if self._thread is not None:
            return self.base_url
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app(),
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, args=(sock,), name=f"fake-gemini-{port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if self._thread_error is not None or not self._thread.is_alive():
                raise RuntimeError("FakeGemini failed to start") from self._thread_error
            if time.monotonic() > deadline:
                raise RuntimeError("FakeGemini did not start within 10 s")
            time.sleep(0.002)
        self.base_url = f"http://127.0.0.1:{port}"
        logger.debug("FakeGemini listening on %s", self.base_url)
        return self.base_url

    async def start(self) -> str:
        """Starts the server thread; returns the base URL (http://127.0.0.1:PORT)."""
        return await asyncio.to_thread(self.start_sync)

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.force_exit = True
        server.should_exit = True
        thread.join(timeout=10.0)
        if thread.is_alive():
            logger.error("FakeGemini thread did not stop within 10 s")
        self._server = self._thread = None

    def _serve(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        assert self._server is not None
        try:
            loop.run_until_complete(self._server.serve(sockets=[sock]))
        except BaseException as exc:
            self._thread_error = exc
            logger.exception("FakeGemini server thread failed")
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()
            sock.close()

    def __enter__(self) -> FakeGemini:
        self.start_sync()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> FakeGemini:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- HTTP ----------------------------------------------------------------------------------------------------

    def _app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/{version}/models/{rest:path}", self._handle, methods=["POST"]),
                Route("/{version}/models/{model}", self._model_info, methods=["GET"]),
            ]
        )

    async def _model_info(self, request: Request) -> Response:
        model = request.path_params["model"]
        with self._lock:
            self.model_lookups[model] += 1
            limits = self.models.get(model)
        if limits is None:
            error = FakeError(404, f"models/{model} is not found for API version {request.path_params['version']}")
            return JSONResponse(error.to_json(), status_code=404)
        input_limit, output_limit = limits
        return JSONResponse(
            {
                "name": f"models/{model}",
                "version": "001",
                "displayName": model,
                "inputTokenLimit": input_limit,
                "outputTokenLimit": output_limit,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
        )

    async def _handle(self, request: Request) -> Response:
        version = request.path_params["version"]
        model, _, action = request.path_params["rest"].partition(":")
        if action not in ("generateContent", "streamGenerateContent"):
            return JSONResponse(FakeError(404, f"unknown action {action!r}").to_json(), status_code=404)
        try:
            body = json.loads(await request.body() or b"{}")
        except json.JSONDecodeError as exc:
            return JSONResponse(FakeError(400, f"invalid JSON body: {exc}").to_json(), status_code=400)
        stream = action == "streamGenerateContent"
        recorded = RecordedRequest(
            path=request.url.path,
            version=version,
            model=model,
            action=action,
            stream=stream,
            body=body,
            headers=dict(request.headers),
        )
        with self._lock:
            self._requests.append(recorded)
            index = len(self._requests)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        arrived = time.monotonic()
        try:
            if self._latency_s:
                await asyncio.sleep(self._latency_s)
            turn = await self._next_turn(body, index)
            if turn.delay_s:
                await asyncio.sleep(turn.delay_s)
        finally:
            with self._lock:
                self.in_flight -= 1
                self.spans.append((arrived, time.monotonic()))
        if isinstance(turn, FakeError):
            return JSONResponse(turn.to_json(), status_code=turn.status)
        if isinstance(turn, FakeRaw):
            if stream:
                chunks = turn.chunks if turn.chunks is not None else (turn.body,)
                return StreamingResponse(_sse_events(chunks), media_type="text/event-stream")
            return JSONResponse(turn.body)
        if turn.thought and not _include_thoughts(body):
            turn = dataclasses.replace(turn, thought="")  # the API sends thought summaries only when asked
        if stream:
            return StreamingResponse(self._sse(turn, model), media_type="text/event-stream")
        return JSONResponse(self._full_response(turn, model))

    async def _next_turn(self, body: dict[str, Any], index: int) -> Turn:
        while True:
            with self._lock:
                item = self._script.popleft() if self._script else None
            if isinstance(item, FakeDelay):
                await asyncio.sleep(item.seconds)
                continue
            if item is not None:
                return item
            break
        if self._responder is not None:
            result = self._responder(body)
            if inspect.isawaitable(result):
                result = await result
            return result
        logger.error("FakeGemini: request %d arrived with no scripted turn left and no responder", index)
        return FakeError(400, f"FakeGemini: no scripted turn left for request {index}", "FAILED_PRECONDITION")

    def _response_id(self) -> str:
        return f"fake-response-{next(self._ids)}"

    def _full_response(self, turn: FakeResponse, model: str) -> dict[str, Any]:
        if turn.block_reason:
            return self._blocked(turn, model)
        parts: list[dict[str, Any]] = [{"text": turn.thought, "thought": True}] if turn.thought else []
        if turn.text:
            parts.append({"text": turn.text})
        parts.extend({"functionCall": call.to_json()} for call in turn.function_calls)
        _attach_signature(parts, turn.thought_signature)
        candidates = [_first_candidate(turn, parts, last=True)]
        for index, other in enumerate(turn.other_candidates, start=1):
            other_parts = [{"text": other.text}] if other.text else []
            candidates.append(_candidate(index, other_parts, other.finish_reason))
        return self._envelope(model, candidates, turn.usage, self._response_id())

    def _blocked(self, turn: FakeResponse, model: str) -> dict[str, Any]:
        feedback: dict[str, Any] = {"blockReason": turn.block_reason}
        if turn.block_reason_message:
            feedback["blockReasonMessage"] = turn.block_reason_message
        out: dict[str, Any] = {"promptFeedback": feedback, "modelVersion": model, "responseId": self._response_id()}
        if turn.usage is not None:
            out["usageMetadata"] = turn.usage.to_json()
        return out

    def _stream_chunks(self, turn: FakeResponse, model: str) -> Iterator[dict[str, Any]]:
        if turn.block_reason:
            yield self._blocked(turn, model)
            return
        response_id = self._response_id()
        chunk_parts: list[list[dict[str, Any]]] = [[{"text": turn.thought, "thought": True}]] if turn.thought else []
        chunk_parts.extend([{"text": piece}] for piece in _split_text(turn.text, turn.stream_chunks))
        calls = [{"functionCall": call.to_json()} for call in turn.function_calls]
        if calls or not chunk_parts:
            chunk_parts.append(calls)
        _attach_signature(chunk_parts[-1], turn.thought_signature)
        if turn.no_content:
            chunk_parts = [[]]
        lanes = [[_first_candidate(turn, parts, last=i == len(chunk_parts)) for i, parts in enumerate(chunk_parts, 1)]]
        for index, other in enumerate(turn.other_candidates, start=1):
            pieces = _split_text(other.text, turn.stream_chunks) or [""]
            lanes.append(
                [
                    _candidate(
                        index, [{"text": piece}] if piece else [], other.finish_reason if i == len(pieces) else None
                    )
                    for i, piece in enumerate(pieces, start=1)
                ]
            )
        # One candidate per chunk: candidate 0's first piece, then candidate 1's, ..., then everyone's second piece.
        ordered = [lane[i] for i in range(max(len(lane) for lane in lanes)) for lane in lanes if i < len(lane)]
        count = len(ordered)
        for i, candidate in enumerate(ordered, start=1):
            last = i == count
            usage = turn.usage if last or turn.usage is None else turn.usage.snapshot(i / count)
            yield self._envelope(model, [candidate], usage, response_id)

    async def _sse(self, turn: FakeResponse, model: str) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._stream_chunks(turn, model)):
            if i and turn.chunk_delay_s:
                await asyncio.sleep(turn.chunk_delay_s)
            yield _sse_event(chunk)

    @staticmethod
    def _envelope(
        model: str, candidates: list[dict[str, Any]], usage: FakeUsage | None, response_id: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"candidates": candidates, "modelVersion": model, "responseId": response_id}
        if usage is not None:
            out["usageMetadata"] = usage.to_json()
        return out


def _candidate(
    index: int | None,
    parts: list[dict[str, Any]] | None,
    finish_reason: str | None,
    finish_message: str | None = None,
) -> dict[str, Any]:
    """A candidate as the API sends it; `parts=None` leaves `content` out, `index=None` leaves the index out."""
    candidate: dict[str, Any] = {}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    if finish_message:
        candidate["finishMessage"] = finish_message
    if index is not None:
        candidate["index"] = index
    return candidate


def _first_candidate(turn: FakeResponse, parts: list[dict[str, Any]], *, last: bool) -> dict[str, Any]:
    return _candidate(
        None if turn.omit_index else 0,
        None if turn.no_content else parts,
        turn.finish_reason if last else None,
        turn.finish_message if last else None,
    )


def _sse_event(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk).encode() + b"\r\n\r\n"


async def _sse_events(chunks: tuple[dict[str, Any], ...]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield _sse_event(chunk)


def _attach_signature(parts: list[dict[str, Any]], signature: str | None) -> None:
    if signature is None:
        return
    if not parts:
        parts.append({"text": ""})
    target = next((p for p in parts if "functionCall" in p), parts[-1])
    target["thoughtSignature"] = signature
