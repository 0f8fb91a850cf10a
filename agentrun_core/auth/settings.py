"""Authentication settings shared by both services (environment variables; see docs/security.md)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from agentrun_core.settings import SettingsError, env_bool, env_str


class AuthMode(enum.StrEnum):
    TOKENS = "tokens"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class AuthSettings:
    # "tokens" (default): every call but health needs a bearer token. "off": every caller is the local admin.
    mode: AuthMode = AuthMode.TOKENS
    tokens_file: Path | None = None
    # The same content as a tokens file, inline (AGENTRUN_TOKENS).
    tokens_inline: str = ""
    # Server reflection without a token (only matters when mode is "tokens" and reflection is enabled).
    reflection_public: bool = False

    @classmethod
    def from_env(cls) -> AuthSettings:
        raw_mode = env_str("AGENTRUN_AUTH", AuthMode.TOKENS.value).strip().lower() or AuthMode.TOKENS.value
        try:
            mode = AuthMode(raw_mode)
        except ValueError:
            raise SettingsError(f"AGENTRUN_AUTH must be tokens or off, got {raw_mode!r}") from None
        tokens_file = env_str("AGENTRUN_TOKENS_FILE", "")
        return cls(
            mode=mode,
            tokens_file=Path(tokens_file).expanduser() if tokens_file else None,
            tokens_inline=env_str("AGENTRUN_TOKENS", ""),
            reflection_public=env_bool("AGENTRUN_REFLECTION_PUBLIC", False),
        )

    @classmethod
    def off(cls) -> AuthSettings:
        return cls(mode=AuthMode.OFF)
