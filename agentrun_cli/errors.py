"""Errors the CLI reports: one readable line on stderr and an exit code, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import grpc
import typer

from agentrun_cli.output import printable

EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_USAGE_CODES = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND})
_STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Where a CLI user's credentials come from, said whenever a service refuses them.
TOKEN_HINT = (
    "pass a bearer token with --token or the AGENTRUN_TOKEN environment variable (an administrator creates one with "
    "`python -m agentrun_core.auth generate USER`; docs/security.md)"
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One service the CLI talks to, with the setting that chose its address (for error messages)."""

    service: str
    target: str
    env_var: str
    flag: str


class CliError(Exception):
    """A failure to report as `error: <message>` with `exit_code` (then `details`, one indented line each)."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.details: list[str] = []


class ServiceError(CliError):
    """A gRPC call failed. `code` is the canonical status code."""

    def __init__(self, endpoint: Endpoint, error: grpc.RpcError) -> None:
        code = _code_of(error)
        super().__init__(format_rpc_error(endpoint, error), exit_code_for(code))
        self.endpoint = endpoint
        self.code = code
        # What the server (or the transport) said, on one line.
        self.status_details = _one_line((error.details() if isinstance(error, grpc.Call) else None) or "")


def _code_of(error: grpc.RpcError) -> grpc.StatusCode:
    code = error.code() if isinstance(error, grpc.Call) else None
    return code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()))


def exit_code_for(code: grpc.StatusCode) -> int:
    return EXIT_USAGE if code in _USAGE_CODES else EXIT_FAILURE


def is_unreachable(error: grpc.RpcError) -> bool:
    """UNAVAILABLE raised by the transport (no connection), as opposed to one the server sent with details."""
    if _code_of(error) is not grpc.StatusCode.UNAVAILABLE:
        return False
    trailing = error.trailing_metadata() if isinstance(error, grpc.Call) else None
    return not any(key == _STATUS_DETAILS_KEY for key, _ in trailing or ())


def format_rpc_error(endpoint: Endpoint, error: grpc.RpcError) -> str:
    """`NOT_FOUND: run '...' not found`: the code name and the server's details, on one line."""
    code = _code_of(error)
    details = _one_line((error.details() if isinstance(error, grpc.Call) else None) or "") or "no details"
    if is_unreachable(error):
        return (
            f"UNAVAILABLE: cannot reach {endpoint.service} at {endpoint.target} ({details}); "
            f"start the services with `agentrun serve all`, or point {endpoint.flag} / {endpoint.env_var} at them"
        )
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return f"{code.name}: {details}; {TOKEN_HINT}"
    if code is grpc.StatusCode.UNIMPLEMENTED:
        # A gRPC server answers there, but not with this call: another service (the two addresses swapped, say), or
        # an older version of this one.
        return (
            f"{code.name}: the server at {endpoint.target} does not serve this call of {endpoint.service} ({details}): "
            f"is it {endpoint.service}, and as new as this CLI? {endpoint.flag} / {endpoint.env_var} choose the address"
        )
    return f"{code.name}: {details}"


def report(error: CliError) -> None:
    print(f"error: {_one_line(error.message)}", file=sys.stderr)
    for line in error.details:
        print(f"  {_one_line(line)}", file=sys.stderr)


P = ParamSpec("P")
R = TypeVar("R")


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turns CliError (and service errors) raised by a command into one stderr line and its exit code."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CliError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper
