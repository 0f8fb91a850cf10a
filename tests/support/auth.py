"""Test helpers for authentication and TLS: token files, a bearer-token client interceptor, a throwaway CA."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agentrun_core.auth import AuthSettings, TokenEntry, hash_token
from agentrun_core.identity import Identity, Role
from agentrun_core.tls import ClientTlsSettings, ServerTlsSettings

# Tokens for the usual cast. Tests never use these anywhere but on loopback test servers.
TOKENS: dict[str, tuple[str, Role]] = {
    "alice-token-0123456789": ("alice", Role.USER),
    "bob-token-0123456789": ("bob", Role.USER),
    "admin-token-0123456789": ("root", Role.ADMIN),
    "service-token-0123456789": ("execution-service", Role.SERVICE),
}
ALICE, BOB, ADMIN, SERVICE = TOKENS


def write_tokens_file(path: Path, tokens: dict[str, tuple[str, Role]] = TOKENS) -> Path:
    lines = ["# agentrun tokens (test)"]
    lines += [TokenEntry(Identity(user, role), hash_token(token)).line() for token, (user, role) in tokens.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def token_auth(path: Path, *, reflection_public: bool = False) -> AuthSettings:
    return AuthSettings(tokens_file=write_tokens_file(path), reflection_public=reflection_public)


class _Bearer:
    def __init__(self, value: str) -> None:
        self._value = value

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", self._value)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# grpc.aio files an interceptor under the first kind it implements only: one class per kind.
class _BearerUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _BearerServerStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _BearerBidi(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


def bearer_interceptors(value: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that add `authorization: <value>` verbatim (tests also send malformed values)."""
    return [_BearerUnary(value), _BearerServerStream(value), _BearerBidi(value)]


def channel(
    target: str, *, token: str | None = None, header: str | None = None, tls: ClientTlsSettings | None = None
) -> grpc.aio.Channel:
    """A channel to `target`; `token` is sent as `Bearer <token>`, `header` verbatim (for malformed values)."""
    value = header if header is not None else (f"Bearer {token}" if token is not None else None)
    interceptors = bearer_interceptors(value) if value is not None else None
    options = list(tls.channel_options()) if tls is not None else []
    credentials = tls.credentials() if tls is not None else None
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


# --- a throwaway PKI ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing we trust
    rogue_client_cert: Path  # a client certificate signed by other_ca
    rogue_client_key: Path

    def server(self, *, mutual: bool = False) -> ServerTlsSettings:
        return ServerTlsSettings(cert=self.server_cert, key=self.server_key, client_ca=self.ca if mutual else None)

    def client(self, *, with_cert: bool = False, rogue: bool = False) -> ClientTlsSettings:
        if rogue:
            return ClientTlsSettings(ca=self.ca, cert=self.rogue_client_cert, key=self.rogue_client_key)
        if with_cert:
            return ClientTlsSettings(ca=self.ca, cert=self.client_cert, key=self.client_key)
        return ClientTlsSettings(ca=self.ca)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _ca(directory: Path, name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def _leaf(
    directory: Path,
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    *,
    server: bool,
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(issuer[0].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    cert = builder.sign(issuer[1], hashes.SHA256())
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key, ca_path = _ca(directory, "test-ca")
    other_cert, other_key, other_path = _ca(directory, "other-ca")
    server_cert, server_key = _leaf(directory, "server", (ca_cert, ca_key), server=True)
    client_cert, client_key = _leaf(directory, "client", (ca_cert, ca_key), server=False)
    rogue_cert, rogue_key = _leaf(directory, "rogue-client", (other_cert, other_key), server=False)
    return Pki(ca_path, server_cert, server_key, client_cert, client_key, other_path, rogue_cert, rogue_key)
