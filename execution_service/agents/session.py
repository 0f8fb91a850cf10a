"""The `session` front matter key: how a run of the agent continues a session (docs/agents.md, Sessions)."""

from __future__ import annotations

from typing import Any

from execution_service.agents.errors import InvalidField
from execution_service.agents.spec import SessionSettings

KNOWN_SESSION_KEYS = ("history_tokens",)
_INT32_MAX = 2**31 - 1


def parse_session(raw: Any) -> SessionSettings:
    """Session settings from the front matter value of `session` (None when absent). Raises InvalidField."""
    defaults = SessionSettings()
    if raw is None:
        return defaults
    if not isinstance(raw, dict):
        raise InvalidField("session", f"must be a mapping with keys {', '.join(KNOWN_SESSION_KEYS)}")
    unknown = sorted(set(raw) - set(KNOWN_SESSION_KEYS))
    if unknown:
        raise InvalidField(
            f"session.{unknown[0]}", f"unknown session setting; the known settings are {', '.join(KNOWN_SESSION_KEYS)}"
        )
    tokens = raw.get("history_tokens", defaults.history_tokens)
    if isinstance(tokens, bool) or not isinstance(tokens, int):
        raise InvalidField("session.history_tokens", f"must be a whole number >= 1, got {tokens!r}")
    if not 1 <= tokens <= _INT32_MAX:
        raise InvalidField("session.history_tokens", f"must be between 1 and {_INT32_MAX}, got {tokens}")
    return SessionSettings(history_tokens=tokens)
