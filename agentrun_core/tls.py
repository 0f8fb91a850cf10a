"""TLS and mutual TLS for both services and their clients (see docs/security.md).

Server side: AGENTRUN_TLS_CERT + AGENTRUN_TLS_KEY (PEM) switch the listener to TLS; AGENTRUN_TLS_CLIENT_CA also
requires every client to present a certificate signed by that CA (mTLS). Client side: a CA file (the server's
issuer) switches the channel to TLS; a client certificate + key are sent for mTLS.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc

from agentrun_core.channel_options import RECONNECT_OPTIONS
from agentrun_core.settings import EnvSettings, SettingsError, UserPath, setting

log = logging.getLogger(__name__)


class TlsConfigError(SettingsError):
    """A TLS setting is incomplete or names a file that cannot be read. The message names the variable."""


def _read(path: Path, variable: str) -> bytes:
    try:
        data = path.expanduser().read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"cannot read {variable} {str(path)!r}: {exc.strerror or exc}") from None
    if b"-----BEGIN" not in data:
        raise TlsConfigError(f"{variable} {str(path)!r} is not a PEM file")
    return data


class ServerTlsSettings(EnvSettings):
    cert: UserPath | None = setting(None, "AGENTRUN_TLS_CERT")
    key: UserPath | None = setting(None, "AGENTRUN_TLS_KEY")
    # Set: clients must present a certificate signed by this CA (mTLS).
    client_ca: UserPath | None = setting(None, "AGENTRUN_TLS_CLIENT_CA")

    @property
    def enabled(self) -> bool:
        return self.cert is not None or self.key is not None

    def credentials(self) -> grpc.ServerCredentials | None:
        """Server credentials, or None for plaintext. TlsConfigError when half configured or unreadable."""
        if not self.enabled:
            if self.client_ca is not None:
                raise TlsConfigError("AGENTRUN_TLS_CLIENT_CA needs AGENTRUN_TLS_CERT and AGENTRUN_TLS_KEY")
            return None
        if self.cert is None or self.key is None:
            raise TlsConfigError("TLS needs both AGENTRUN_TLS_CERT and AGENTRUN_TLS_KEY")
        pair = (_read(self.key, "AGENTRUN_TLS_KEY"), _read(self.cert, "AGENTRUN_TLS_CERT"))
        if self.client_ca is None:
            return grpc.ssl_server_credentials([pair])
        return grpc.ssl_server_credentials(
            [pair], root_certificates=_read(self.client_ca, "AGENTRUN_TLS_CLIENT_CA"), require_client_auth=True
        )


def add_port(server: grpc.aio.Server, address: str, tls: ServerTlsSettings, *, service: str) -> int:
    """Binds `address` with TLS when configured (else plaintext); the bound port. OSError naming the address and the
    service when it cannot be bound (in use, not an address of this host): gRPC raises a bare RuntimeError."""
    credentials = tls.credentials()
    try:
        if credentials is None:
            log.info("listening without TLS", extra={"service": service, "address": address})
            port = server.add_insecure_port(address)
        else:
            log.info(
                "listening with TLS",
                extra={"service": service, "address": address, "mutual_tls": tls.client_ca is not None},
            )
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        raise OSError(
            f"{service} cannot listen on {address}: the address is in use or is not an address of this host "
            "(choose another with its --address flag or variable)"
        )
    return port


class ClientTlsSettings(EnvSettings):
    """A client's TLS: built in code (the CLI from its flags), or from the environment as a subclass names it."""

    # The CA that signed the server's certificate; set means TLS.
    ca: UserPath | None = None
    # Client certificate and key for mTLS.
    cert: UserPath | None = None
    key: UserPath | None = None
    # Override the name checked against the server certificate (when the target is an address it does not name).
    server_name: str = ""

    @property
    def enabled(self) -> bool:
        return self.ca is not None

    def credentials(self, *, prefix: str = "AGENTRUN_TLS") -> grpc.ChannelCredentials | None:
        """Channel credentials, or None for plaintext. `prefix` names the variables in error messages."""
        if not self.enabled:
            if self.cert is not None or self.key is not None:
                raise TlsConfigError(f"a client certificate needs the server's CA too ({prefix}_CA)")
            return None
        if (self.cert is None) != (self.key is None):
            raise TlsConfigError(f"mutual TLS needs both {prefix}_CLIENT_CERT and {prefix}_CLIENT_KEY")
        assert self.ca is not None
        root = _read(self.ca, f"{prefix}_CA")
        if self.cert is None or self.key is None:
            return grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.ssl_channel_credentials(
            root_certificates=root,
            private_key=_read(self.key, f"{prefix}_CLIENT_KEY"),
            certificate_chain=_read(self.cert, f"{prefix}_CLIENT_CERT"),
        )

    def channel_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.enabled and self.server_name else []


def aio_channel(
    target: str,
    tls: ClientTlsSettings,
    *,
    options: list[tuple[str, Any]] | None = None,
    prefix: str = "AGENTRUN_TLS",
    interceptors: list[grpc.aio.ClientInterceptor] | None = None,
) -> grpc.aio.Channel:
    """A grpc.aio channel to `target`: TLS (and mTLS) per `tls`, plaintext when it has no CA; it reconnects at most
    about 2 s after its server comes back (channel_options.RECONNECT_OPTIONS)."""
    all_options = [*RECONNECT_OPTIONS, *(options or []), *tls.channel_options()]
    credentials = tls.credentials(prefix=prefix)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=all_options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=all_options, interceptors=interceptors)
