"""`python -m agentrun_cli.healthcheck ADDRESS... [--service NAME] [--wait SECONDS]`: exit 0 when the gRPC health
check of every address says SERVING.

For container HEALTHCHECKs: no Typer import, one call per address with a short deadline, one line each. With
`--wait`, for scripts that start services and use them next: check again until every address serves or the time is
up.
"""

from __future__ import annotations

import argparse
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

EXIT_SERVING = 0
EXIT_UNHEALTHY = 1


def check(address: str, service: str = "", timeout_s: float = 3.0) -> tuple[bool, str]:
    """(serving?, what to print)."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as exc:
            code = exc.code().name if isinstance(exc, grpc.Call) else "UNKNOWN"
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            return False, f"{address}: {code}: {' '.join((details or '').split())}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"{address}: {status}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentrun_cli.healthcheck", description=__doc__)
    parser.add_argument("addresses", nargs="+", metavar="address", help="host:port of a gRPC server")
    parser.add_argument("--service", default="", help="service name to check (default: the whole server)")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds per check (default 3)")
    parser.add_argument("--wait", type=float, default=0.0, help="check again until serving, up to this many seconds")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    healthy = True
    for address in args.addresses:
        while True:
            serving, message = check(address, args.service, args.timeout)
            if serving or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        print(message, file=sys.stdout if serving else sys.stderr)
        healthy = healthy and serving
    return EXIT_SERVING if healthy else EXIT_UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
