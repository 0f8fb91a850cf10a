"""`runs show`, `watch` and `cancel` take any unique prefix or suffix of a run id, such as the shortened ids
`runs list` prints (resolved by a real RunsService with `id` filters); an ambiguous part lists the candidates; a
whole id is used as is. UNAUTHENTICATED names --token / AGENTRUN_TOKEN."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from agentrun.runs.v1 import runs_service_pb2 as rs
from agentrun.runs.v1 import runs_service_pb2_grpc as rs_grpc
from typer.testing import CliRunner

from agentrun_core.proto_convert import run_to_pb
from runs_service.config import RunsSettings
from runs_service.server import RunningRunsServer, start_server
from tests.cli.cli_helpers import invoke
from tests.cli.fake_services import FakeServer
from tests.security.fuzz_support import LoopThread
from tests.support.auth import ADMIN, ALICE, BOB, SERVICE, token_auth
from tests.support.run_factory import make_run

A = "0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f"  # alice's
B = "0190b6e2-7c3a-7d4e-9f10-aaaa4c5d6e7f"  # alice's: the same last 8 characters as A
C = "0190b6e3-0000-7000-8000-000000000001"  # bob's
COLUMNS_80 = {"COLUMNS": "80"}


class RealRuns:
    """A real RunsService (SQLite, authentication on) in a thread of its own, with runs A, B (alice) and C (bob)."""

    def __init__(self, tmp: Path) -> None:
        self.thread = LoopThread()
        settings = RunsSettings(
            listen_address="127.0.0.1:0",
            data_dir=tmp,
            migrate_on_start=True,
            auth=token_auth(tmp / "tokens.jsonl"),
        )
        self.server: RunningRunsServer = self.thread.run(start_server(settings), timeout_s=60)
        self.target = f"127.0.0.1:{self.server.port}"
        self.thread.run(self._seed())

    async def _seed(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            stub = rs_grpc.RunsServiceStub(channel)
            metadata = (("authorization", f"Bearer {SERVICE}"),)
            for run_id, user, agent in ((A, "alice", "clock"), (B, "alice", "files"), (C, "bob", "clock")):
                run = run_to_pb(make_run(run_id=run_id, user=user, agent=agent))
                await stub.RecordRun(rs.RecordRunRequest(run=run), metadata=metadata)

    def stop(self) -> None:
        self.thread.run(self.server.stop(0))
        self.thread.close()


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealRuns]:
    runs = RealRuns(Path(tmp_path_factory.mktemp("run-ids")))
    yield runs
    runs.stop()


def _cli(
    runner: CliRunner, runs: RealRuns, token: str, *args: str, execution: str | None = None
) -> tuple[int, str, str]:
    targets = ["--runs-target", runs.target, "--execution-target", execution or runs.target]
    result = invoke(runner, None, *targets, *args, env={"AGENTRUN_TOKEN": token, **COLUMNS_80})
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_the_short_ids_runs_list_prints_work_with_runs_show(runner: CliRunner, real_runs: RealRuns) -> None:
    code, out, _ = _cli(runner, real_runs, ADMIN, "runs", "list", "--agent", "files")
    assert code == 0 and "…4c5d6e7f" in out  # B's id, shortened at 80 columns
    printed = re.search(r"…[0-9a-f]{8}", out)
    assert printed is not None
    # A and B end alike: the printed suffix is ambiguous for an admin, who sees both...
    code, _, err = _cli(runner, real_runs, ADMIN, "runs", "show", printed.group())
    assert code == 2
    assert err.startswith("error: '4c5d6e7f' is ambiguous: the ids of 2 runs start or end with it; give more"), err
    assert f"\n  {A} clock COMPLETED " in err and f"\n  {B} files COMPLETED " in err
    # ...and more characters of it, as a suffix or as a prefix, name one run.
    for part in ("…aaaa4c5d6e7f", "aaaa4c5d6e7f", "0190b6e2-7c3a-7d4e-9f10-aa", "0190B6E2-7C3A-7D4E-9F10-AA", f" {B} "):
        code, out, err = _cli(runner, real_runs, ADMIN, "runs", "show", part, "--json")
        assert code == 0, (part, err)
        assert f'"id": "{B}"' in out, part


def test_a_prefix_of_a_run_id_works_and_a_unique_one_needs_no_more(runner: CliRunner, real_runs: RealRuns) -> None:
    code, out, err = _cli(runner, real_runs, ADMIN, "runs", "show", "0190b6e3", "--json")
    assert code == 0, err
    assert f'"id": "{C}"' in out


def test_parts_that_match_nothing_or_are_not_part_of_an_id(runner: CliRunner, real_runs: RealRuns) -> None:
    code, _, err = _cli(runner, real_runs, ADMIN, "runs", "show", "deadbeef")
    assert code == 2 and err.startswith("error: no run id starts or ends with 'deadbeef' (among the runs you may"), err
    code, _, err = _cli(runner, real_runs, ADMIN, "runs", "show", "not-an-id")
    assert code == 2 and "is not a run id nor part of one" in err, err


def test_a_whole_id_is_used_as_is(runner: CliRunner, real_runs: RealRuns) -> None:
    missing = "0190b6e2-0000-7000-8000-000000000000"
    code, _, err = _cli(runner, real_runs, ADMIN, "runs", "show", missing)
    assert code == 2 and err.startswith(f"error: NOT_FOUND: run '{missing}' not found"), err


def test_only_runs_the_caller_may_see_are_candidates(runner: CliRunner, real_runs: RealRuns) -> None:
    code, _, err = _cli(runner, real_runs, BOB, "runs", "show", "4c5d6e7f")
    assert code == 2 and "no run id starts or ends with '4c5d6e7f'" in err, err  # alice's runs stay invisible
    code, out, err = _cli(runner, real_runs, BOB, "runs", "show", "0190b6e", "--json")
    assert code == 0 and f'"id": "{C}"' in out, err  # the prefix matches all three; bob sees one
    code, out, err = _cli(runner, real_runs, ALICE, "runs", "show", "0190b6e2-7c3a-7d4e-9f10-2", "--json")
    assert code == 0 and f'"id": "{A}"' in out, err


def test_cancel_and_watch_resolve_the_id_before_calling_execution_service(
    runner: CliRunner, real_runs: RealRuns
) -> None:
    fake = FakeServer().start()
    try:
        code, out, err = _cli(runner, real_runs, ADMIN, "runs", "cancel", "2a3b4c5d6e7f", execution=fake.target)
        assert code == 0, err
        assert fake.calls.cancels[0].run_id == A
        assert f"cancel requested: run {A} stops now" in out
        code, _, _ = _cli(runner, real_runs, ADMIN, "runs", "watch", "…000000000001", execution=fake.target)
        watched = [r for r in fake.calls.requests if type(r).__name__ == "WatchRunRequest"]
        assert watched and watched[0].run_id == C  # type: ignore[attr-defined]
        # --after's runs too, as typed.
        _cli(runner, real_runs, ADMIN, "runs", "watch", C, "--after", "…2a3b4c5d6e7f:3", execution=fake.target)
        watched = [r for r in fake.calls.requests if type(r).__name__ == "WatchRunRequest"]
        assert dict(watched[-1].last_received) == {A: 3}  # type: ignore[attr-defined]
    finally:
        fake.stop()


def test_unauthenticated_names_the_token_flag_and_variable(runner: CliRunner, real_runs: RealRuns) -> None:
    for token in ("", "wrong-token-0123456789"):
        code, _, err = _cli(runner, real_runs, token, "runs", "list")
        assert code == 1, err
        assert err.startswith("error: UNAUTHENTICATED: "), err
        assert "pass a bearer token with --token or the AGENTRUN_TOKEN environment variable" in err, err
        assert "python -m agentrun_core.auth generate USER" in err
        assert err.count("\n") == 1


def test_a_service_at_the_other_services_address_is_named_with_the_setting_to_fix(
    runner: CliRunner, real_runs: RealRuns
) -> None:
    code, _, err = _cli(runner, real_runs, ADMIN, "agents", "list")  # ExecutionService's target is RunsService's
    assert code == 1
    assert err.startswith(
        f"error: UNIMPLEMENTED: the server at {real_runs.target} does not serve this call of ExecutionService ("
    ), err
    assert "--execution-target / AGENTRUN_EXECUTION_TARGET choose the address" in err, err
