"""Authentication as an attacker probes it: no token, wrong tokens, malformed headers, on every RPC of both services.
Health stays open; reflection needs a token unless made public; a user token cannot record runs."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agentrun_core.auth import AuthSettings, TokenConfigError, TokenStore, hash_token
from agentrun_core.auth.tokens import main as tokens_main
from agentrun_core.identity import Identity, Role
from runs_service.config import RunsSettings
from runs_service.server import start_server as start_runs
from tests.runs_service.api.test_startup import wait_serving
from tests.security.support import drain, secure_stack, status_of
from tests.support.auth import ADMIN, ALICE, SERVICE, write_tokens_file
from tests.support.stack import Stack, free_port

RUN_ID = "0190a0f0-0000-7000-8000-000000000001"
LONG_TOKEN = "x" * 10 * 1024

BAD_HEADERS = {
    "missing": None,
    "empty": "",
    "scheme only": "Bearer",
    "scheme and space": "Bearer ",
    "basic": "Basic YWxpY2U6cGFzc3dvcmQ=",
    "unknown": "Bearer not-a-real-token-0123456789",
    "lowercase hash of a real token": f"Bearer {hash_token(ALICE)}",
    "two words": f"Bearer {ALICE} extra",
    "10 KB token": f"Bearer {LONG_TOKEN}",
    "no scheme": ALICE,
}


def _calls(stack: Stack, header: str | None) -> dict[str, Callable[[], Awaitable[Any]]]:
    runs = stack.runs_stub(header=header) if header is not None else stack.runs_stub()
    execution = stack.execution_stub(header=header) if header is not None else stack.execution_stub()
    now_run = run_pb2.Run(id=RUN_ID, agent_name="echo", user="mallory", status=run_pb2.RUN_STATUS_RUNNING)
    return {
        "RecordRun": lambda: runs.RecordRun(rs.RecordRunRequest(run=now_run)),
        "RecordRuns": lambda: runs.RecordRuns(rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=now_run)])),
        "DeleteRuns": lambda: runs.DeleteRuns(rs.DeleteRunsRequest(match_all=True)),
        "ExportRuns": lambda: drain(runs.ExportRuns(rs.ExportRunsRequest())),
        "GetRun": lambda: runs.GetRun(rs.GetRunRequest(run_id=RUN_ID)),
        "ListRuns": lambda: runs.ListRuns(rs.ListRunsRequest()),
        "ListRunSteps": lambda: runs.ListRunSteps(rs.ListRunStepsRequest(run_id=RUN_ID)),
        "GetRunStats": lambda: runs.GetRunStats(rs.GetRunStatsRequest()),
        "GetToolStats": lambda: runs.GetToolStats(rs.GetToolStatsRequest()),
        "ExecuteAgent": lambda: drain(execution.ExecuteAgent(ex.ExecuteAgentRequest(agent_name="echo", task="hi"))),
        "WatchRun": lambda: drain(execution.WatchRun(ex.WatchRunRequest(run_id=RUN_ID))),
        "CancelRun": lambda: execution.CancelRun(ex.CancelRunRequest(run_id=RUN_ID)),
        "ForkRun": lambda: drain(execution.ForkRun(ex.ForkRunRequest(run_id=RUN_ID, from_sequence=1))),
        "ListAgents": lambda: execution.ListAgents(ex.ListAgentsRequest()),
    }


async def test_every_rpc_refuses_missing_unknown_and_malformed_tokens(tmp_path: Path) -> None:
    async with secure_stack(tmp_path) as stack:
        for label, header in BAD_HEADERS.items():
            for rpc, call in _calls(stack, header).items():
                code, details = await status_of(call)
                assert code == grpc.StatusCode.UNAUTHENTICATED, (label, rpc, code, details)
                assert "Bearer <token>" in details or "invalid bearer token" in details, (label, rpc, details)
                for secret in (ALICE, LONG_TOKEN[:64], "YWxpY2U6cGFzc3dvcmQ", "not-a-real-token"):
                    assert secret not in details, (label, rpc)
        # Nothing was started or stored by any of those calls.
        assert stack.execution.manager.live_count == 0
        listed = await stack.runs_stub(ADMIN).ListRuns(rs.ListRunsRequest())
        assert list(listed.runs) == []


async def test_valid_tokens_pass_and_health_is_open_without_one(tmp_path: Path) -> None:
    async with secure_stack(tmp_path) as stack:
        for address in (stack.runs_address, stack.execution_address):
            health = health_pb2_grpc.HealthStub(stack.channel(address))
            reply = await health.Check(health_pb2.HealthCheckRequest())
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        agents = await stack.execution_stub(ALICE).ListAgents(ex.ListAgentsRequest())
        assert {a.name for a in agents.agents} == {"echo", "leaky"}
        assert list((await stack.runs_stub(ALICE).ListRuns(rs.ListRunsRequest())).runs) == []


async def _reflection_list(channel: grpc.aio.Channel) -> list[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names: list[str] = []
    async for reply in call:
        names += [s.name for s in reply.list_services_response.service]
    return names


async def test_reflection_needs_a_token_unless_public(tmp_path: Path) -> None:
    async with secure_stack(tmp_path / "private") as stack:
        for address in (stack.runs_address, stack.execution_address):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await _reflection_list(stack.channel(address))
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "agentrun.runs.v1.RunsService" in await _reflection_list(
                stack.channel(stack.runs_address, token=ALICE)
            )
    async with secure_stack(tmp_path / "public", reflection_public=True) as stack:
        assert "agentrun.execution.v1.ExecutionService" in await _reflection_list(
            stack.channel(stack.execution_address)
        )
        # Public reflection does not open anything else.
        code, _ = await status_of(lambda: stack.runs_stub().ListRuns(rs.ListRunsRequest()))
        assert code == grpc.StatusCode.UNAUTHENTICATED


async def test_a_user_token_cannot_record_runs_but_the_service_token_can(tmp_path: Path) -> None:
    async with secure_stack(tmp_path) as stack:
        forged = run_pb2.Run(id=RUN_ID, agent_name="echo", user="bob", status=run_pb2.RUN_STATUS_RUNNING, task="x")
        forged.start_time.GetCurrentTime()
        code, details = await status_of(lambda: stack.runs_stub(ALICE).RecordRun(rs.RecordRunRequest(run=forged)))
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        code, _ = await status_of(lambda: stack.runs_stub(ADMIN).GetRun(rs.GetRunRequest(run_id=RUN_ID)))
        assert code == grpc.StatusCode.NOT_FOUND  # nothing was stored
        batch = rs.RecordRunsRequest(requests=[rs.RecordRunRequest(run=forged)])
        code, details = await status_of(lambda: stack.runs_stub(ALICE).RecordRuns(batch))
        assert code == grpc.StatusCode.PERMISSION_DENIED, details
        reply = await stack.runs_stub(SERVICE).RecordRun(rs.RecordRunRequest(run=forged))
        assert reply.outcome == rs.RECORD_OUTCOME_CREATED


async def test_tokens_mode_without_tokens_refuses_to_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = RunsSettings(listen_address="127.0.0.1:0", data_dir=tmp_path, migrate_on_start=True)
    with pytest.raises(TokenConfigError) as caught:
        await start_runs(settings)
    assert "AGENTRUN_TOKENS_FILE" in str(caught.value) and "AGENTRUN_AUTH=off" in str(caught.value)
    # The process says the same and exits 2.
    env = {"PATH": "/usr/bin:/bin", "AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_AUTH": "tokens"}
    done = subprocess.run(
        [sys.executable, "-m", "runs_service", "--address", "127.0.0.1:0", "--migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "AGENTRUN_TOKENS_FILE" in done.stderr and "AGENTRUN_AUTH=off" in done.stderr


def test_token_store_parses_hashes_and_refuses_bad_entries(tmp_path: Path) -> None:
    path = write_tokens_file(tmp_path / "tokens.jsonl")
    store = TokenStore.load(file=path, inline=json.dumps({"user": "carol", "role": "admin", "token_sha256": "a" * 64}))
    assert store.identify(ALICE) == Identity("alice", Role.USER)
    assert store.identify(SERVICE) == Identity("execution-service", Role.SERVICE)
    assert store.identify(hash_token(ALICE)) is None
    assert store.identify("") is None and store.identify("y" * 5000) is None
    assert "carol" in store.users
    bad = {
        '{"user": "eve", "role": "user", "token": "plaintext-secret"}': "token_sha256",
        '{"user": "eve", "role": "root", "token_sha256": "' + "b" * 64 + '"}': "role",
        '{"user": "eve", "role": "user", "token_sha256": "abc"}': "64 hexadecimal",
        '{"user": "", "role": "user", "token_sha256": "' + "b" * 64 + '"}': "user",
        "user: eve": "JSON object",
    }
    for line, expected in bad.items():
        with pytest.raises(TokenConfigError) as caught:
            TokenStore.load(file=None, inline=line)
        assert expected in str(caught.value) and "plaintext-secret" not in str(caught.value)
    with pytest.raises(TokenConfigError):
        TokenStore.load(file=tmp_path / "missing.jsonl")
    dup = '{"user": "a", "role": "user", "token_sha256": "' + "c" * 64 + '"}'
    with pytest.raises(TokenConfigError):
        TokenStore.load(file=None, inline=f"{dup}\n{dup.replace('a', 'b', 1)}")
    assert AuthSettings().mode == "tokens"


def test_token_cli_hashes_and_generates(capsys: pytest.CaptureFixture[str]) -> None:
    assert tokens_main(["hash", "abc"]) == 0
    assert capsys.readouterr().out.strip() == hash_token("abc")
    assert tokens_main(["generate", "dave", "--role", "admin"]) == 0
    token, line = capsys.readouterr().out.strip().splitlines()
    entry = json.loads(line)
    assert entry == {"user": "dave", "role": "admin", "token_sha256": hash_token(token)}
    assert TokenStore.load(file=None, inline=line).identify(token) == Identity("dave", Role.ADMIN)


async def test_a_streaming_call_without_a_token_is_always_unauthenticated(tmp_path: Path) -> None:
    """The status of a refused call that streams its requests must not race the client's own writes: answered while
    the client was still sending, 2 to 9 calls in 1000 ended INTERNAL ("Internal error from Core") on the client (and
    test_reflection_needs_a_token_unless_public failed now and then). A real RunsService process, as clients see it."""
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "AGENTRUN_AUTH": "tokens",
        "AGENTRUN_TOKENS_FILE": str(write_tokens_file(tmp_path / "tokens.jsonl")),
        "AGENTRUN_DATA_DIR": str(tmp_path / "runs"),
        "AGENTRUN_MIGRATE_ON_START": "true",
        "AGENTRUN_RUNS_ADDRESS": f"127.0.0.1:{port}",
        "AGENTRUN_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen([sys.executable, "-m", "runs_service"], env=env, stderr=subprocess.DEVNULL)

    async def refused() -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:  # a new connection each time
            try:
                await _reflection_list(channel)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    try:
        await wait_serving(f"127.0.0.1:{port}", timeout_s=60)
        codes: list[grpc.StatusCode] = []
        for _ in range(100):
            codes += await asyncio.gather(*(refused() for _ in range(10)))
        assert set(codes) == {grpc.StatusCode.UNAUTHENTICATED}, collections.Counter(codes)
    finally:
        process.terminate()
        process.wait(timeout=30)
