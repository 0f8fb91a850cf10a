"""Where the CLI finds the services and how it authenticates: environment variables, overridden by flags."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from agentrun_core.auth.settings import AuthMode
from agentrun_core.settings import ClientTarget, EnvSettings, setting

EXECUTION_TARGET_ENV = "AGENTRUN_EXECUTION_TARGET"
RUNS_TARGET_ENV = "AGENTRUN_RUNS_TARGET"
TOKEN_ENV = "AGENTRUN_TOKEN"
TLS_CA_ENV = "AGENTRUN_TLS_CA"
TLS_CLIENT_CERT_ENV = "AGENTRUN_TLS_CLIENT_CERT"
TLS_CLIENT_KEY_ENV = "AGENTRUN_TLS_CLIENT_KEY"

DEFAULT_EXECUTION_TARGET = "127.0.0.1:50052"
DEFAULT_RUNS_TARGET = "127.0.0.1:50051"


class CliSettings(EnvSettings):
    """The environment (`CliSettings.from_env()`), overridden by the global flags of the same names."""

    execution_target: ClientTarget = setting(DEFAULT_EXECUTION_TARGET, EXECUTION_TARGET_ENV)
    runs_target: ClientTarget = setting(DEFAULT_RUNS_TARGET, RUNS_TARGET_ENV)
    # Sent as `authorization: Bearer <token>` on every call when set.
    token: str | None = setting(None, TOKEN_ENV, repr=False)
    # PEM file of the CA that signed the services' certificates; set means TLS.
    tls_ca: str | None = setting(None, TLS_CA_ENV)
    # Client certificate and key (PEM) for services that require mutual TLS.
    tls_cert: str | None = setting(None, TLS_CLIENT_CERT_ENV)
    tls_key: str | None = setting(None, TLS_CLIENT_KEY_ENV)


class ExportSettings(EnvSettings):
    """`agentrun runs export --output`: how often (seconds) it fsyncs the file and records its resume cursor (0:
    after every message)."""

    checkpoint_s: float = setting(1.0, "AGENTRUN_EXPORT_CHECKPOINT_S", ge=0)


class ServeSettings(EnvSettings):
    """`agentrun serve` (development): authentication is off unless AGENTRUN_AUTH names a mode."""

    auth: AuthMode | None = setting(None, "AGENTRUN_AUTH")

    @field_validator("auth", mode="before")
    @classmethod
    def _auth_text(cls, value: Any) -> Any:
        return value.strip().lower() or None if isinstance(value, str) else value
