"""Process-wide gRPC settings that must be in place before `grpc` is first imported.

Imported by the packages that start servers (runs_service, execution_service, agentrun_cli) from their
`__init__`, which Python runs before their entry points import grpc.
"""

from __future__ import annotations

import os

FORK_SUPPORT_VAR = "GRPC_ENABLE_FORK_SUPPORT"


def prepare_grpc_environment() -> None:
    """gRPC's fork handlers are off unless the operator says otherwise: nothing here forks and keeps using gRPC in
    the child, while uvloop starts every stdio MCP server with fork(), where the handlers would log "Other threads
    are currently calling into gRPC, skipping fork() handlers" on each start."""
    os.environ.setdefault(FORK_SUPPORT_VAR, "false")


def grpc_fork_handlers_off() -> bool:
    """Whether gRPC's fork handlers are off. With them on, a fork() by uvloop (which starts stdio MCP servers that
    way) sometimes breaks the child before it runs: the MCP connection closes at once. Measured: 1 start in 4."""
    return os.environ.get(FORK_SUPPORT_VAR, "").strip().lower() in ("false", "0", "no", "off")
