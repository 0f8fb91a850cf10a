"""Which client targets name several replicas, and what their channels are told (health-checked round_robin)."""

from __future__ import annotations

import json

import pytest

from agentrun_core.replica_channels import EXECUTION_SERVICE, healthy_replicas_options, names_replicas


@pytest.mark.parametrize(
    ("target", "replicas"),
    [
        ("ipv4:10.0.0.5:50052,10.0.0.6:50052", True),
        ("ipv6:[::1]:50052,[::1]:50053", True),
        ("dns:///execution:50052", True),
        (" dns:execution:50052", True),
        ("127.0.0.1:50052", False),
        ("execution:50052", False),
        ("ipv4:10.0.0.5:50052", False),
        ("unix:/run/agentrun.sock", False),
    ],
)
def test_targets_that_name_replicas(target: str, replicas: bool) -> None:
    assert names_replicas(target) is replicas


def test_replica_targets_get_health_checked_round_robin_and_single_servers_nothing() -> None:
    ((name, value),) = healthy_replicas_options(EXECUTION_SERVICE, "ipv4:10.0.0.5:50052,10.0.0.6:50052")
    assert name == "grpc.service_config"
    assert json.loads(value) == {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": "agentrun.execution.v1.ExecutionService"},
    }
    assert healthy_replicas_options(EXECUTION_SERVICE, "127.0.0.1:50052") == []
