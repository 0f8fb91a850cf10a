"""The test-wide switch that forbids real model calls (AGENTRUN_FORBID_REAL_MODEL=1, set by tests/conftest.py).

Under the switch a Gemini provider may only talk to an http URL on loopback (a local fake); anything else fails
loudly with MODEL_REQUEST_INVALID before a request is made.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from agentrun_core.domain import ErrorReason
from execution_service.config import ModelGuardSettings
from execution_service.model.base import ModelError

FORBID_ENV = "AGENTRUN_FORBID_REAL_MODEL"
GEMINI_BASE_URL_ENV = "GOOGLE_GEMINI_BASE_URL"
DEFAULT_GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/"


def real_model_calls_forbidden() -> bool:
    # Read at every model call (a change is seen at once); parsed once per value (parsing was ~3% of a busy
    # replica's CPU).
    return ModelGuardSettings.current().forbid_real_model


def effective_gemini_base_url(base_url: str | None) -> str:
    """The URL the SDK will call: the explicit one, else GOOGLE_GEMINI_BASE_URL (which the SDK reads itself), else
    Google's endpoint."""
    return base_url or ModelGuardSettings.current().gemini_base_url or DEFAULT_GEMINI_BASE_URL


def is_loopback_http_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    host = parts.hostname
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_real_model_allowed(base_url: str) -> None:
    """Raises ModelError(MODEL_REQUEST_INVALID) when real model calls are forbidden and `base_url` is not local."""
    if real_model_calls_forbidden() and not is_loopback_http_url(base_url):
        raise ModelError(
            ErrorReason.MODEL_REQUEST_INVALID,
            f"real model calls are forbidden in tests ({FORBID_ENV}=1): base URL {base_url!r} is not a loopback "
            "http URL; point the provider at a local fake (tests/fakes/gemini_server.py) or use model 'test'",
        )
