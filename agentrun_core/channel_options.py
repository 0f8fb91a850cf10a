"""Channel options every long-lived client channel of the project shares.

gRPC's default reconnect backoff starts at 1 s and grows by 1.6 times per failed attempt up to 120 s, so a client
whose server was down for a minute keeps failing (UNAVAILABLE) for tens of seconds after the server is back. These
options cap the wait between two connection attempts at 2 s: a channel is usable again at most about 2 s after its
server returns, at the price of one connection attempt every 2 s while it is down.

`min_reconnect_backoff_ms` is gRPC's minimum connect timeout, not a wait: how long one attempt may take to connect
(TCP, TLS, HTTP/2 handshake) before it counts as failed. 5 s (gRPC's default is 20 s) fits a TLS handshake over a slow
network, lets a server that accepts connections but is too busy to answer stay "silent" rather than "unreachable" for
a few seconds, and bounds the wait after a network partition (packets dropped, no refusal) heals.
"""

from __future__ import annotations

from typing import Any

# The longest wait between two connection attempts to a server that is down (gRPC adds up to 20% jitter).
MAX_RECONNECT_BACKOFF_MS = 2000
# The time one connection attempt may take.
CONNECT_TIMEOUT_MS = 5000

RECONNECT_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.initial_reconnect_backoff_ms", 1000),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ("grpc.min_reconnect_backoff_ms", CONNECT_TIMEOUT_MS),
]
