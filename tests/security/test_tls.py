"""TLS and mutual TLS on both services and the ExecutionService -> RunsService channel, with a CA made at test time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.execution.v1 import execution_service_pb2_grpc as ex_grpc
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc

from agentrun_core.tls import ClientTlsSettings, ServerTlsSettings, TlsConfigError
from tests.security.support import secure_stack, status_of
from tests.support.auth import ADMIN, ALICE, SERVICE, channel, make_pki


async def test_mutual_tls_end_to_end_and_refusals(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    async with secure_stack(
        tmp_path,
        runs_tls=pki.server(mutual=True),
        tls=pki.server(mutual=True),
        client_tls=pki.client(with_cert=True),
        runs_service_tls=pki.client(with_cert=True),
    ) as stack:
        events = await stack.execute(ALICE, agent_name="echo", task="over TLS")
        assert events[-1].WhichOneof("event") == "run_finished"
        stored = await stack.stored_run(events[0].run_started.run_id)  # published over mTLS with the service token
        assert stored.user == "alice"
        # localhost is in the certificate too.
        port = stack.runs_address.rsplit(":", 1)[1]
        local = channel(f"localhost:{port}", token=ADMIN, tls=pki.client(with_cert=True))
        try:
            assert len((await rs_grpc.RunsServiceStub(local).ListRuns(rs.ListRunsRequest())).runs) == 1
        finally:
            await local.close()
        refused = {
            "plaintext": None,
            "no client certificate": pki.client(),
            "client certificate from another CA": pki.client(rogue=True),
            "server not trusted": ClientTlsSettings(ca=pki.other_ca, cert=pki.client_cert, key=pki.client_key),
        }
        for label, tls in refused.items():
            for address in (stack.runs_address, stack.execution_address):
                ch = channel(address, token=SERVICE, tls=tls) if tls else channel(address, token=SERVICE)
                call: Callable[[], Awaitable[Any]] = (
                    partial(ex_grpc.ExecutionServiceStub(ch).ListAgents, ex.ListAgentsRequest(), timeout=5)
                    if address == stack.execution_address
                    else partial(rs_grpc.RunsServiceStub(ch).ListRuns, rs.ListRunsRequest(), timeout=5)
                )
                try:
                    code, _ = await status_of(call)
                finally:
                    await ch.close()
                assert code == grpc.StatusCode.UNAVAILABLE, (label, address, code)


async def test_server_only_tls_needs_no_client_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    async with secure_stack(
        tmp_path,
        runs_tls=pki.server(),
        tls=pki.server(),
        client_tls=pki.client(),
        runs_service_tls=pki.client(),
    ) as stack:
        events = await stack.execute(ALICE, agent_name="echo", task="over TLS")
        assert (await stack.stored_run(events[0].run_started.run_id)).user == "alice"


def test_half_configured_tls_is_refused_with_the_variable_named(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    cases: list[tuple[ServerTlsSettings | ClientTlsSettings, str]] = [
        (ServerTlsSettings(cert=pki.server_cert), "AGENTRUN_TLS_KEY"),
        (ServerTlsSettings(client_ca=pki.ca), "AGENTRUN_TLS_CERT"),
        (ServerTlsSettings(cert=pki.server_cert, key=tmp_path / "missing.pem"), "AGENTRUN_TLS_KEY"),
        (ClientTlsSettings(cert=pki.client_cert, key=pki.client_key), "AGENTRUN_TLS_CA"),
        (ClientTlsSettings(ca=pki.ca, cert=pki.client_cert), "AGENTRUN_TLS_CLIENT_KEY"),
    ]
    for settings, variable in cases:
        with pytest.raises(TlsConfigError) as caught:
            settings.credentials()
        assert variable in str(caught.value)
