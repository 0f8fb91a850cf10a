"""Whether a file the CLI hands to gRPC as TLS material (CA, client certificate, client key) holds PEM: gRPC itself
only fails when connecting, with its own log lines and "Failed to create security handshaker"."""

from __future__ import annotations

import base64
import binascii
import re

_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----", re.DOTALL)


def pem_problem(data: bytes, label: str) -> str | None:
    """What is wrong with `data` as a PEM file holding a `label` block ("CERTIFICATE"; "PRIVATE KEY" also accepts
    "RSA PRIVATE KEY", "EC PRIVATE KEY", ...) whose body is base64; None when it is fine."""
    blocks = [(found.group(1).decode(), found.group(2)) for found in _BLOCK.finditer(data)]
    if not blocks:
        return f"is not a PEM file (no -----BEGIN {label}----- block)"
    wanted = [body for name, body in blocks if name == label or name.endswith(" " + label)]
    if not wanted:
        names = ", ".join(sorted({name for name, _ in blocks}))
        return f"holds no {label} PEM block (it holds: {names})"
    for body in wanted:
        lines = [line.strip() for line in body.splitlines() if b":" not in line]  # skip RFC 1421 headers
        try:
            base64.b64decode(b"".join(lines), validate=True)
        except (binascii.Error, ValueError):
            return f"has a {label} PEM block that is not valid base64"
    return None
