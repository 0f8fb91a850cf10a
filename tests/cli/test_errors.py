"""Service errors become one readable stderr line and an exit code; never a traceback."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from agentrun_cli.errors import exit_code_for
from tests.cli.cli_helpers import free_port, invoke
from tests.cli.fake_services import FakeServer

MISSING_RUN_ID = "0193a5c4-0000-7000-8000-00000000dead"


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(expected), lines[0]


def test_not_found_is_one_line_and_exit_2(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "show", MISSING_RUN_ID)
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, f"error: NOT_FOUND: run '{MISSING_RUN_ID}' not found")
    assert result.stdout == ""


def test_invalid_argument_details_on_one_line(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "list", "--filter", "bogus = 1")
    assert result.exit_code == 2
    assert_one_line_error(
        result.stderr, "error: INVALID_ARGUMENT: filter: unknown field 'bogus'; allowed fields: agent_name, status (at"
    )


def test_not_found_from_a_stream(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "run", "missing", "hello")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "error: NOT_FOUND: agent 'missing' not found")


def test_other_codes_exit_1(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "runs", "cancel", "0193a5c4-7d2e-7b3a-9c1d-2e3f4a5b6c7d")
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, "error: FAILED_PRECONDITION: run '0193a5c4-7d2e-7b3a-9c1d-2e3f4a5b6c7d'")


@pytest.mark.parametrize(
    ("args", "service", "flag", "env_var"),
    [
        (["runs", "list"], "RunsService", "--runs-target", "AGENTRUN_RUNS_TARGET"),
        (["agents", "list"], "ExecutionService", "--execution-target", "AGENTRUN_EXECUTION_TARGET"),
        (["run", "clock", "what time is it?"], "ExecutionService", "--execution-target", "AGENTRUN_EXECUTION_TARGET"),
    ],
)
def test_unreachable_service_names_the_address_and_how_to_start_it(
    runner: CliRunner, args: list[str], service: str, flag: str, env_var: str
) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = invoke(runner, None, *args, env={"AGENTRUN_RUNS_TARGET": address, "AGENTRUN_EXECUTION_TARGET": address})
    assert result.exit_code == 1
    assert_one_line_error(result.stderr, f"error: UNAVAILABLE: cannot reach {service} at {address}")
    assert "agentrun serve all" in result.stderr
    assert flag in result.stderr and env_var in result.stderr


def test_flags_override_environment(runner: CliRunner, fake: FakeServer) -> None:
    dead = f"127.0.0.1:{free_port()}"
    result = invoke(
        runner, None, "--runs-target", fake.target, "runs", "show", MISSING_RUN_ID, env={"AGENTRUN_RUNS_TARGET": dead}
    )
    assert "NOT_FOUND" in result.stderr


def test_bad_option_values_exit_2(runner: CliRunner, fake: FakeServer) -> None:
    for args, message in [
        (["runs", "list", "--status", "finished"], "error: unknown status 'finished'"),
        (["runs", "stats", "--since", "soon"], "error: --since must be a number and a unit"),
        (["run", "clock", "t", "--var", "novalue"], "error: --var expects KEY=VALUE"),
    ]:
        result = invoke(runner, fake, *args)
        assert result.exit_code == 2, args
        assert_one_line_error(result.stderr, message)
    assert fake.calls.requests == []


def test_missing_ca_file(runner: CliRunner, fake: FakeServer) -> None:
    result = invoke(runner, fake, "--tls-ca", "/nonexistent/ca.pem", "runs", "list")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "error: cannot read the CA file '/nonexistent/ca.pem'")


def test_exit_codes() -> None:
    assert exit_code_for(grpc.StatusCode.NOT_FOUND) == 2
    assert exit_code_for(grpc.StatusCode.INVALID_ARGUMENT) == 2
    assert exit_code_for(grpc.StatusCode.PERMISSION_DENIED) == 1
    assert exit_code_for(grpc.StatusCode.UNAVAILABLE) == 1


def test_a_token_file_saved_with_crlf_is_sent_without_its_line_end(runner: CliRunner, fake: FakeServer) -> None:
    """Before: gRPC's own E... validate_metadata.cc log lines, then `error: INTERNAL: Invalid metadata`."""
    result = invoke(runner, fake, "runs", "list", env={"AGENTRUN_TOKEN": "s3cret-token\r\n"})
    assert result.exit_code == 0, result.stderr
    assert fake.calls.metadata[-1]["authorization"] == "Bearer s3cret-token"


@pytest.mark.parametrize(
    ("token", "flag", "problem"),
    [
        ("ab\rcd", False, "a control character (U+000D) at character 3"),
        ("ab\x7fcd", True, "a control character (U+007F) at character 3"),
        ("tök", True, "a non-ASCII character (U+00F6) at character 2"),
    ],
)
def test_a_token_with_a_control_or_non_ascii_character_is_one_line_naming_the_setting(
    runner: CliRunner, fake: FakeServer, token: str, flag: bool, problem: str
) -> None:
    args = ["--token", token] if flag else []
    env = {} if flag else {"AGENTRUN_TOKEN": token}
    result = invoke(runner, fake, *args, "runs", "list", env=env)
    assert result.exit_code == 2
    setting = "--token" if flag else "AGENTRUN_TOKEN"
    assert_one_line_error(result.stderr, f"error: the bearer token ({setting}) holds {problem}")
    assert token not in result.stderr
    assert fake.calls.metadata == []


_CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
_KEY = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    ("files", "flag", "expected"),
    [
        ({"ca": "my-host\n"}, "--tls-ca", "the CA file '{ca}' (AGENTRUN_TLS_CA / --tls-ca) is not a PEM file"),
        ({"ca": _KEY}, "--tls-ca", "the CA file '{ca}' (AGENTRUN_TLS_CA / --tls-ca) holds no CERTIFICATE PEM block"),
        (
            {"ca": _CERT, "cert": _CERT, "key": "not a key"},
            "--tls-key",
            "the client key '{key}' (AGENTRUN_TLS_CLIENT_KEY / --tls-key) is not a PEM file",
        ),
        (
            {"ca": _CERT, "cert": _KEY, "key": _KEY},
            "--tls-cert",
            "the client certificate '{cert}' (AGENTRUN_TLS_CLIENT_CERT / --tls-cert) holds no CERTIFICATE PEM block",
        ),
    ],
)
def test_a_tls_file_that_is_not_pem_is_one_line_naming_it_and_exit_2(
    runner: CliRunner, fake: FakeServer, tmp_path: Path, files: dict[str, str], flag: str, expected: str
) -> None:
    """Before: four lines of gRPC E... logs, then "UNAVAILABLE: cannot reach RunsService ... (Failed to create
    security handshaker.)", exit 1."""
    paths = {}
    for name, text in files.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_text(text)
    args = [f"--tls-{name}" for name in files]
    argv = [part for name, arg in zip(files, args, strict=True) for part in (arg, str(paths[name]))]
    result = invoke(runner, fake, *argv, "runs", "list")
    assert result.exit_code == 2
    assert_one_line_error(result.stderr, "error: " + expected.format(**{k: str(v) for k, v in paths.items()}))
    assert flag in result.stderr
    assert fake.calls.requests == []
