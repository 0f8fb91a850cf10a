"""Where the CLI finds the services and how it authenticates: environment variables, overridden by flags."""

from __future__ import annotations

from dataclasses import dataclass

EXECUTION_TARGET_ENV = "AGENTRUN_EXECUTION_TARGET"
RUNS_TARGET_ENV = "AGENTRUN_RUNS_TARGET"
TOKEN_ENV = "AGENTRUN_TOKEN"
TLS_CA_ENV = "AGENTRUN_TLS_CA"
TLS_CLIENT_CERT_ENV = "AGENTRUN_TLS_CLIENT_CERT"
TLS_CLIENT_KEY_ENV = "AGENTRUN_TLS_CLIENT_KEY"

DEFAULT_EXECUTION_TARGET = "127.0.0.1:50052"
DEFAULT_RUNS_TARGET = "127.0.0.1:50051"


@dataclass(frozen=True, slots=True)
class CliSettings:
    execution_target: str = DEFAULT_EXECUTION_TARGET
    runs_target: str = DEFAULT_RUNS_TARGET
    # Sent as `authorization: Bearer <token>` on every call when set.
    token: str | None = None
    # PEM file of the CA that signed the services' certificates; set means TLS.
    tls_ca: str | None = None
    # Client certificate and key (PEM) for services that require mutual TLS.
    tls_cert: str | None = None
    tls_key: str | None = None
