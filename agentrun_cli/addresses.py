"""Turning a listen address into one a client on this machine can dial."""

from __future__ import annotations

_WILDCARDS = {"0.0.0.0", "[::]", "::", ""}


def client_target(listen_address: str) -> str:
    """`0.0.0.0:50051` and `[::]:50051` -> `127.0.0.1:50051`; anything else unchanged."""
    host, sep, port = listen_address.rpartition(":")
    if sep and host in _WILDCARDS:
        return f"127.0.0.1:{port}"
    return listen_address
