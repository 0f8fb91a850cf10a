"""Maps google-genai and transport exceptions to ModelError (reason, provider code/status/message, retryable)."""

from __future__ import annotations

import re
from typing import Any

import httpx2
from google.genai import errors as genai_errors

from agentrun_core.domain import ErrorReason
from execution_service.model.base import ModelError

try:  # The SDK's async client uses aiohttp instead of httpx2 when aiohttp is importable.
    import aiohttp

    _AIOHTTP_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientConnectionError,)
    _AIOHTTP_TIMEOUTS: tuple[type[BaseException], ...] = (aiohttp.ServerTimeoutError,)
except ImportError:  # pragma: no cover - depends on the environment
    _AIOHTTP_CONNECTION_ERRORS = ()
    _AIOHTTP_TIMEOUTS = ()

_TIMEOUTS: tuple[type[BaseException], ...] = (TimeoutError, httpx2.TimeoutException, *_AIOHTTP_TIMEOUTS)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.NetworkError,  # ConnectError, ReadError, WriteError, CloseError
    httpx2.RemoteProtocolError,  # server closed the connection mid-response
    *_AIOHTTP_CONNECTION_ERRORS,
    ConnectionError,
)
_UNAVAILABLE_CODES = frozenset({500, 502, 503, 504})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)s\s*$")


def _error_details(body: Any, type_suffix: str) -> list[dict[str, Any]]:
    """The entries of a Google error body's `details` whose @type ends with `type_suffix` (e.g.
    "google.rpc.RetryInfo"); the body may be the whole reply ({"error": {...}}) or its error object."""
    error = body.get("error", body) if isinstance(body, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    return [
        item
        for item in (items if isinstance(items, list) else ())
        if isinstance(item, dict) and str(item.get("@type", "")).endswith(type_suffix)
    ]


def retry_delay_hint(details: Any) -> float | None:
    """The retryDelay of a google.rpc.RetryInfo in a Google error body, in seconds."""
    for item in _error_details(details, "google.rpc.RetryInfo"):
        match = _DURATION.match(str(item.get("retryDelay", "")))
        if match:
            return float(match.group(1))
    return None


def daily_quota_spent(details: Any) -> bool:
    """Whether a Google error body's google.rpc.QuotaFailure names a per-day quota (quotaId
    "GenerateRequestsPerDayPerProjectPerModel-FreeTier"): no retry within a run can succeed."""
    for item in _error_details(details, "google.rpc.QuotaFailure"):
        violations = item.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            if isinstance(violation, dict) and "PerDay" in str(violation.get("quotaId", "")):
                return True
    return False


def api_key_refused(details: Any) -> bool:
    """Whether a Google error body's google.rpc.ErrorInfo says the API key is not valid (the Gemini API answers a bad
    key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID)."""
    return any(
        str(item.get("reason", "")).startswith("API_KEY_") for item in _error_details(details, "google.rpc.ErrorInfo")
    )


def from_api_error(exc: genai_errors.APIError) -> ModelError:
    code = exc.code
    status = exc.status or ""
    message = exc.message or str(exc)
    if code == 429:
        return ModelError(
            ErrorReason.MODEL_RATE_LIMITED,
            message,
            code=code,
            status=status,
            retryable=not daily_quota_spent(exc.details),
            retry_after_s=retry_delay_hint(exc.details),
        )
    if code in _UNAVAILABLE_CODES:
        return ModelError(ErrorReason.MODEL_UNAVAILABLE, message, code=code, status=status, retryable=True)
    if code == 408:
        return ModelError(ErrorReason.MODEL_TIMEOUT, message, code=code, status=status, retryable=True)
    if code in (401, 403) or api_key_refused(exc.details):
        return ModelError(ErrorReason.MODEL_AUTH_FAILED, message, code=code, status=status)
    if code is not None and 400 <= code < 500:
        return ModelError(ErrorReason.MODEL_REQUEST_INVALID, message, code=code, status=status)
    return ModelError(ErrorReason.MODEL_ERROR, message, code=code, status=status)


def to_model_error(exc: BaseException, *, model: str, timeout_s: float) -> ModelError | None:
    """The ModelError for a failed model call, or None when `exc` is not a provider/transport failure."""
    if isinstance(exc, ModelError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return from_api_error(exc)
    if isinstance(exc, _TIMEOUTS):
        detail = f": {exc}" if str(exc) else ""
        return ModelError(
            ErrorReason.MODEL_TIMEOUT,
            f"model {model} did not answer within {timeout_s:g} s ({type(exc).__name__}{detail})",
            retryable=True,
        )
    if isinstance(exc, _CONNECTION_ERRORS):
        return ModelError(
            ErrorReason.MODEL_UNAVAILABLE,
            f"cannot reach model {model}: {type(exc).__name__}: {exc}",
            retryable=True,
        )
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return ModelError(ErrorReason.MODEL_ERROR, f"model {model} sent an unreadable response: {exc}")
    return None
