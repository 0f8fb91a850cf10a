"""The web console's settings: environment variables (pydantic-settings), overridden by `agentrun web` flags.

The console reaches the services like the CLI does (AGENTRUN_RUNS_TARGET, AGENTRUN_EXECUTION_TARGET, AGENTRUN_TLS_*)
and authenticates like the services (AGENTRUN_WEB_AUTH, else AGENTRUN_AUTH: `tokens` asks each person for a token on a
login page, `off` calls the services without one). AGENTRUN_WEB_TOKEN makes it a single-user console: every page is
served as that token's user, with no login page. docs/web.md lists every variable.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import SecretStr, field_validator

from agentrun_core.bearer_token import clean_token, token_problem
from agentrun_core.settings import (
    ClientTarget,
    EnvSettings,
    LogFormat,
    LogLevel,
    SecretValueError,
    SettingsError,
    UserPath,
    setting,
)
from agentrun_core.tls import ClientTlsSettings

ADDRESS_ENV = "AGENTRUN_WEB_ADDRESS"
DEFAULT_ADDRESS = "127.0.0.1:8080"
TRACE_ID_PLACEHOLDER = "{trace_id}"


class WebAuth(enum.StrEnum):
    # Each person signs in with their own bearer token (the services' default, AGENTRUN_AUTH=tokens).
    TOKENS = "tokens"
    # No token is sent (services started with AGENTRUN_AUTH=off, local development).
    OFF = "off"


class WebSettings(EnvSettings):
    address: str = setting(DEFAULT_ADDRESS, ADDRESS_ENV)
    runs_target: ClientTarget = setting("127.0.0.1:50051", "AGENTRUN_RUNS_TARGET")
    execution_target: ClientTarget = setting("127.0.0.1:50052", "AGENTRUN_EXECUTION_TARGET")
    auth: WebAuth = setting(WebAuth.TOKENS, "AGENTRUN_WEB_AUTH", "AGENTRUN_AUTH")
    # Single-user deployment: every page is served as this token's user (no login page).
    token: SecretStr | None = setting(None, "AGENTRUN_WEB_TOKEN")
    # TLS to the services (as the CLI): the CA that signed their certificates, and a client pair for mutual TLS.
    tls_ca: UserPath | None = setting(None, "AGENTRUN_TLS_CA")
    tls_client_cert: UserPath | None = setting(None, "AGENTRUN_TLS_CLIENT_CERT")
    tls_client_key: UserPath | None = setting(None, "AGENTRUN_TLS_CLIENT_KEY")
    # HTTPS for the console itself (then session cookies are Secure).
    https_cert: UserPath | None = setting(None, "AGENTRUN_WEB_TLS_CERT")
    https_key: UserPath | None = setting(None, "AGENTRUN_WEB_TLS_KEY")
    # Mark cookies Secure even over plain HTTP (the console behind a proxy that terminates TLS).
    secure_cookies: bool = setting(False, "AGENTRUN_WEB_SECURE_COOKIES")
    # Link from a run's trace id to a trace UI, e.g. http://localhost:16686/trace/{trace_id} (Jaeger).
    trace_url: str = setting("", "AGENTRUN_WEB_TRACE_URL")
    session_ttl_s: float = setting(12 * 3600.0, "AGENTRUN_WEB_SESSION_TTL_S", gt=0)
    max_sessions: int = setting(10_000, "AGENTRUN_WEB_MAX_SESSIONS", ge=1)
    # How often an open runs page asks for its rows again (runs that start or end appear without a reload).
    refresh_s: float = setting(2.0, "AGENTRUN_WEB_REFRESH_S", gt=0)
    # A live run page that has heard nothing of its run this long says so (instead of spinning); it keeps trying.
    live_first_event_s: float = setting(8.0, "AGENTRUN_WEB_LIVE_FIRST_EVENT_S", gt=0)
    # Deadline of each unary call to the services.
    call_timeout_s: float = setting(10.0, "AGENTRUN_WEB_CALL_TIMEOUT_S", gt=0)
    log_level: LogLevel = setting("INFO", "AGENTRUN_LOG_LEVEL")
    log_format: LogFormat = setting("auto", "AGENTRUN_LOG_FORMAT")

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, value: object) -> object:
        return value.strip().lower() or WebAuth.TOKENS.value if isinstance(value, str) else value

    @field_validator("token", mode="before")
    @classmethod
    def _token_text(cls, value: object) -> object:
        """A token file's trailing newline or CR (AGENTRUN_WEB_TOKEN="$(cat file)" keeps a CR) is dropped."""
        return clean_token(value) or None if isinstance(value, str) else value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        """Refused here, not by gRPC on each call ("Invalid metadata"); the error never echoes the token."""
        problem = token_problem(value.get_secret_value()) if value is not None else None
        if problem is not None:
            raise SecretValueError(problem)
        return value

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
        settings = cls.from_env(**{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings
