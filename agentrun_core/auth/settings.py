"""Authentication settings shared by both services (environment variables; see docs/security.md)."""

from __future__ import annotations

import enum
from typing import Any

from pydantic import field_validator

from agentrun_core.settings import EnvSettings, UserPath, setting


class AuthMode(enum.StrEnum):
    TOKENS = "tokens"
    OFF = "off"


class AuthSettings(EnvSettings):
    # "tokens" (default): every call but health needs a bearer token. "off": every caller is the local admin.
    mode: AuthMode = setting(AuthMode.TOKENS, "AGENTRUN_AUTH")
    tokens_file: UserPath | None = setting(None, "AGENTRUN_TOKENS_FILE")
    # The same content as a tokens file, inline (AGENTRUN_TOKENS).
    tokens_inline: str = setting("", "AGENTRUN_TOKENS")
    # Server reflection without a token (only matters when mode is "tokens" and reflection is enabled).
    reflection_public: bool = setting(False, "AGENTRUN_REFLECTION_PUBLIC")

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_text(cls, value: Any) -> Any:
        """Case and surrounding blanks do not matter; blank means the default."""
        if isinstance(value, str):
            return value.strip().lower() or AuthMode.TOKENS
        return value

    @classmethod
    def off(cls) -> AuthSettings:
        return cls(mode=AuthMode.OFF)
