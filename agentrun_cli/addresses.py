"""Turning a listen address into one a client on this machine can dial."""

from __future__ import annotations

_WILDCARDS = {"0.0.0.0", "[::]", "::", ""}


def client_target(listen_address: str) -> str:
    """`0.0.0.0:50051` and `[::]:50051` -> `127.0.0.1:50051`; anything else unchanged."""
    host, sep, port = listen_address.rpartition(":")
    if sep and host in _WILDCARDS:
        return f"127.0.0.1:{port}"
    return listen_address


def bound_address(listen_address: str, port: int) -> str:
    """`listen_address` with the port the server actually bound (what port 0 became); a unix: address unchanged."""
    if listen_address.startswith(("unix:", "unix-abstract:")) or port <= 0:
        return listen_address
    host, sep, _port = listen_address.rpartition(":")
    return f"{host}:{port}" if sep else f"{listen_address}:{port}"
