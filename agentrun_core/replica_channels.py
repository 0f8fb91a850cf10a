"""Client channels to a service that runs as several replicas (ExecutionService in durable mode): given a target
that names every replica (`ipv4:A,B`, or a DNS name with an address per replica), calls go to the replicas whose
health service says SERVING, in turn. A replica that drains (SIGTERM) goes NOT_SERVING at once and gets no new calls,
so a client starts its runs elsewhere instead of being refused for the drain's whole grace; a dead one is left as
soon as its connection fails. gRPC's client-side health checking (gRFC A17) needs round_robin; with one address it
behaves as pick_first, and a server without the health service counts as healthy. A single HOST:PORT keeps gRPC's
defaults (names_replicas)."""

from __future__ import annotations

import json
from typing import Any

from agentrun.execution.v1 import execution_service_pb2

# The name ExecutionService's health service reports it under (and sets NOT_SERVING when it drains).
EXECUTION_SERVICE = execution_service_pb2.DESCRIPTOR.services_by_name["ExecutionService"].full_name


def names_replicas(target: str) -> bool:
    """Whether `target` may name several replicas: an address list (`ipv4:A,B`, `ipv6:...`) or a `dns:` name (one
    address per replica). A plain HOST:PORT is one server: its channel stays gRPC's default (pick_first, no health
    checks), so a server that does not serve the service (another service at that address) answers UNIMPLEMENTED,
    which names the setting to fix, rather than looking unhealthy."""
    text = target.strip()
    return text.startswith("dns:") or (text.startswith(("ipv4:", "ipv6:")) and "," in text)


def healthy_replicas_options(service_name: str, target: str) -> list[tuple[str, Any]]:
    """Channel options for `target`: when it names several replicas, round_robin over them, skipping those not
    SERVING `service_name`; none otherwise."""
    if not names_replicas(target):
        return []
    config = {"loadBalancingConfig": [{"round_robin": {}}], "healthCheckConfig": {"serviceName": service_name}}
    return [("grpc.service_config", json.dumps(config))]
