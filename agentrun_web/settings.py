"""The web console's settings: environment variables (pydantic-settings), overridden by `agentrun web` flags.

The console reaches the services like the CLI does (AGENTRUN_RUNS_TARGET, AGENTRUN_EXECUTION_TARGET, AGENTRUN_TLS_*)
and authenticates like the services (AGENTRUN_WEB_AUTH, else AGENTRUN_AUTH: `tokens` asks each person for a token on a
login page, `off` calls the services without one). AGENTRUN_WEB_TOKEN makes it a single-user console: every page is
served as that token's user, with no login page. docs/web.md lists every variable.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentrun_core.settings import SettingsError
from agentrun_core.tls import ClientTlsSettings

ADDRESS_ENV = "AGENTRUN_WEB_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1:8080"
TRACE_ID_PLACEHOLDER = "{trace_id}"


class WebAuth(enum.StrEnum):
    # Each person signs in with their own bearer token (the services' default, AGENTRUN_AUTH=tokens).
    TOKENS = "tokens"
    # No token is sent (services started with AGENTRUN_AUTH=off, local development).
    OFF = "off"


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", validate_by_name=True, validate_by_alias=True)

    address: str = Field(default=DEFAULT_ADDRESS, validation_alias=ADDRESS_ENV)
    runs_target: str = Field(default="127.0.0.1:50051", validation_alias="AGENTRUN_RUNS_TARGET")
    execution_target: str = Field(default="127.0.0.1:50052", validation_alias="AGENTRUN_EXECUTION_TARGET")
    auth: WebAuth = Field(default=WebAuth.TOKENS, validation_alias=AliasChoices("AGENTRUN_WEB_AUTH", "AGENTRUN_AUTH"))
    # Single-user deployment: every page is served as this token's user (no login page).
    token: SecretStr | None = Field(default=None, validation_alias="AGENTRUN_WEB_TOKEN")
    # TLS to the services (as the CLI): the CA that signed their certificates, and a client pair for mutual TLS.
    tls_ca: Path | None = Field(default=None, validation_alias="AGENTRUN_TLS_CA")
    tls_client_cert: Path | None = Field(default=None, validation_alias="AGENTRUN_TLS_CLIENT_CERT")
    tls_client_key: Path | None = Field(default=None, validation_alias="AGENTRUN_TLS_CLIENT_KEY")
    # HTTPS for the console itself (then session cookies are Secure).
    https_cert: Path | None = Field(default=None, validation_alias="AGENTRUN_WEB_TLS_CERT")
    https_key: Path | None = Field(default=None, validation_alias="AGENTRUN_WEB_TLS_KEY")
    # Mark cookies Secure even over plain HTTP (the console behind a proxy that terminates TLS).
    secure_cookies: bool = Field(default=False, validation_alias="AGENTRUN_WEB_SECURE_COOKIES")
    # Link from a run's trace id to a trace UI, e.g. http://localhost:16686/trace/{trace_id} (Jaeger).
    trace_url: str = Field(default="", validation_alias="AGENTRUN_WEB_TRACE_URL")
    session_ttl_s: float = Field(default=12 * 3600.0, gt=0, validation_alias="AGENTRUN_WEB_SESSION_TTL_S")
    max_sessions: int = Field(default=10_000, ge=1, validation_alias="AGENTRUN_WEB_MAX_SESSIONS")
    # How often an open runs page asks for its rows again (runs that start or end appear without a reload).
    refresh_s: float = Field(default=2.0, gt=0, validation_alias="AGENTRUN_WEB_REFRESH_S")
    # Deadline of each unary call to the services.
    call_timeout_s: float = Field(default=10.0, gt=0, validation_alias="AGENTRUN_WEB_CALL_TIMEOUT_S")
    log_level: str = Field(default="INFO", validation_alias="AGENTRUN_LOG_LEVEL")
    log_format: str = Field(default="auto", validation_alias="AGENTRUN_LOG_FORMAT")

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, value: object) -> object:
        return value.strip().lower() or WebAuth.TOKENS.value if isinstance(value, str) else value

    @field_validator("trace_url")
    @classmethod
    def _trace_url(cls, value: str) -> str:
        value = value.strip()
        if value and (TRACE_ID_PLACEHOLDER not in value or not value.startswith(("http://", "https://"))):
            raise ValueError(f"must be an http(s) URL containing {TRACE_ID_PLACEHOLDER}, got {value!r}")
        return value

    @field_validator("address", "runs_target", "execution_target")
    @classmethod
    def _host_port(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        return value

    @property
    def client_tls(self) -> ClientTlsSettings:
        return ClientTlsSettings(ca=self.tls_ca, cert=self.tls_client_cert, key=self.tls_client_key)

    @property
    def serves_https(self) -> bool:
        return self.https_cert is not None

    @property
    def needs_login(self) -> bool:
        """Whether people sign in with their own token (no single-user token, authentication on)."""
        return self.auth is WebAuth.TOKENS and self.token is None

    def trace_link(self, trace_id: str) -> str:
        return self.trace_url.replace(TRACE_ID_PLACEHOLDER, trace_id) if self.trace_url and trace_id else ""

    def host_port(self) -> tuple[str, int]:
        """The listen address split for the HTTP server; SettingsError when it is not host:port."""
        host, sep, port = self.address.rpartition(":")
        host = host.strip("[]")
        if not sep or not port.isdigit() or int(port) > 65535:
            raise SettingsError(f"{ADDRESS_ENV} / --address must be HOST:PORT, got {self.address!r}")
        return host or "0.0.0.0", int(port)

    def check(self) -> None:
        """Settings that are only wrong together; SettingsError naming the variables."""
        if (self.https_cert is None) != (self.https_key is None):
            raise SettingsError("HTTPS needs both AGENTRUN_WEB_TLS_CERT and AGENTRUN_WEB_TLS_KEY")
        self.client_tls.credentials(prefix="AGENTRUN_TLS")  # reads the files: a bad path fails at start-up
        self.host_port()

    @classmethod
    def load(cls, **overrides: Any) -> WebSettings:
        """From the environment, with `overrides` (non-None values) on top. SettingsError names the variable."""
        try:
            settings = cls(**{k: v for k, v in overrides.items() if v is not None})
        except ValidationError as exc:
            raise SettingsError(describe(exc)) from None
        settings.check()
        return settings


def _variables(field_name: str) -> list[str]:
    field = WebSettings.model_fields[field_name]
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [alias] if isinstance(alias, str) else [field_name]


def describe(error: ValidationError) -> str:
    """One line per problem, naming the environment variable(s) (not the Python field)."""
    names = {variable: name for name in WebSettings.model_fields for variable in [name, *_variables(name)]}
    lines = []
    for problem in error.errors():
        location = str((problem.get("loc") or ("?",))[0])
        field = names.get(location)
        label = " / ".join(_variables(field)) if field is not None else location
        lines.append(f"{label}: {problem.get('msg', 'invalid value')}")
    return "; ".join(lines)
