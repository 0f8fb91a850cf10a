"""Settings come from one library (pydantic-settings, agentrun_core.settings): every documented variable is read by
the field it names, with its documented default; a bad value is one line naming the variable (exit code 2 from the
real commands); flags override the environment; settings built in code read no environment."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentrun_cli.services.components import execution_settings, runs_settings
from agentrun_cli.settings import CliSettings, ExportSettings, ServeSettings
from agentrun_core.auth.settings import AuthMode, AuthSettings
from agentrun_core.settings import EnvSettings, ProcessSettings, SettingsError
from agentrun_core.telemetry_settings import TelemetrySettings
from agentrun_core.tls import ServerTlsSettings
from agentrun_web.settings import WebSettings
from execution_service.config import ExecutionSettings, ModelGuardSettings, RunsServiceTlsSettings
from runs_service.config import RunsSettings

REPO = Path(__file__).resolve().parents[2]
SETTINGS: list[type[EnvSettings]] = [
    RunsSettings,
    ExecutionSettings,
    AuthSettings,
    ServerTlsSettings,
    RunsServiceTlsSettings,
    CliSettings,
    TelemetrySettings,
    WebSettings,
    ProcessSettings,
    ModelGuardSettings,
    ExportSettings,
    ServeSettings,
]
# Documented variables read elsewhere than a settings class, or only by the OpenTelemetry SDK itself.
NOT_SETTINGS = {
    "GRPC_ENABLE_FORK_SUPPORT",  # gRPC's own; set (unless given) before gRPC loads, agentrun_core.grpc_process
    "AGENTRUN_HEALTH_ADDRESS",  # the Docker health check
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_BSP_",
    "OTEL_METRIC_EXPORT_INTERVAL",
    "OTEL_TRACES_SAMPLER",
    "AGENTRUN_TEST_DATABASE_URL",
}
# The modules that may read the environment by hand: the settings library itself, gRPC's own variable, and the
# `${VAR}` references of mcp.json (a configuration file's interpolation, not a setting).
READS_ENVIRONMENT = {
    "agentrun_core/settings.py",
    "agentrun_core/grpc_process.py",
    "execution_service/tools/mcp_config.py",
}
PACKAGES = ("agentrun_core", "agentrun_cli", "agentrun_web", "execution_service", "runs_service")


def _variables(settings: type[EnvSettings]) -> set[str]:
    names: set[str] = set()
    for field in settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None:
            names.update(str(choice) for choice in alias.choices)  # type: ignore[union-attr]
    return names


def test_every_documented_variable_is_read_by_a_settings_class() -> None:
    read = set().union(*(_variables(settings) for settings in SETTINGS))
    documented: set[str] = set()
    for doc in ("docs/configuration.md", "docs/security.md", "docs/telemetry.md", "README.md"):
        for line in (REPO / doc).read_text().splitlines():
            if line.startswith("|"):
                documented.update(re.findall(r"`((?:AGENTRUN|OTEL|GEMINI|GOOGLE|DATABASE)_[A-Z0-9_]*[A-Z0-9])`", line))
    missing = {
        name
        for name in documented - read
        if not any(name.startswith(other) for other in NOT_SETTINGS) and not name.endswith("_")
    }
    assert not missing, f"documented but read by no settings class: {sorted(missing)}"


def test_no_module_reads_the_environment_by_hand() -> None:
    pattern = re.compile(r"\bos\.environ\b|\bgetenv\(|\bos\.getenvb?\b|\bfrom os import .*\benviron\b")
    offenders = [
        f"{path.relative_to(REPO)}:{number}: {line.strip()}"
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
        if str(path.relative_to(REPO)) not in READS_ENVIRONMENT
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert not offenders, "read the environment through an EnvSettings class instead:\n" + "\n".join(offenders)


def test_settings_once_read_by_hand_are_read_and_checked_by_their_class() -> None:
    assert ProcessSettings.from_env({"AGENTRUN_EVENT_LOOP": " UVLOOP"}).event_loop == "uvloop"
    assert ModelGuardSettings.from_env({"AGENTRUN_FORBID_REAL_MODEL": "1"}).forbid_real_model
    assert not ModelGuardSettings.from_env({}).forbid_real_model
    assert ExportSettings.from_env({"AGENTRUN_EXPORT_CHECKPOINT_S": "0"}).checkpoint_s == 0
    assert ExportSettings.from_env({}).checkpoint_s == 1.0
    assert ServeSettings.from_env({}).auth is None
    assert ServeSettings.from_env({"AGENTRUN_AUTH": " Tokens "}).auth is AuthMode.TOKENS
    assert ServeSettings.from_env({"AGENTRUN_AUTH": "off"}).auth is AuthMode.OFF


def test_defaults_are_the_documented_ones() -> None:
    runs, execution = RunsSettings(), ExecutionSettings()
    assert runs.listen_address == "127.0.0.1:50051" and runs.data_dir == Path("data") and runs.database_url == ""
    assert runs.max_record_bytes == 8 * 1024 * 1024 and runs.max_message_bytes == 16 * 1024 * 1024
    assert not runs.migrate_on_start and runs.reflection and runs.shutdown_grace_s == 10
    assert (runs.log_level, runs.log_format) == ("INFO", "auto")
    assert execution.listen_address == "127.0.0.1:50052" and execution.runs_service_target == "127.0.0.1:50051"
    assert execution.agents_dir == Path("examples/agents") and execution.mcp_config == Path("examples/mcp.json")
    assert execution.max_task_bytes == 100_000 and execution.max_concurrent_runs == 2000
    assert execution.max_tool_result_bytes == 65536 and execution.redaction_enabled
    assert (execution.max_streams_per_user, execution.rate_limit_per_minute, execution.rate_limit_burst) == (16, 60, 20)
    assert execution.model_retry_attempts == 4 and execution.model_timeout_s == 120 and execution.shutdown_grace_s == 20
    assert AuthSettings().mode is AuthMode.TOKENS


def test_variables_are_read_and_converted() -> None:
    environ = {
        "AGENTRUN_RUNS_ADDRESS": "0.0.0.0:7000",
        "AGENTRUN_DATA_DIR": "~/agentrun-data",
        "DATABASE_URL": "postgresql+psycopg://u@h/db",
        "AGENTRUN_MIGRATE_ON_START": "yes",
        "AGENTRUN_MAX_RECORD_BYTES": "2048",
        "AGENTRUN_SHUTDOWN_GRACE_S": "1.5",
        "AGENTRUN_LOG_LEVEL": "debug",
        "AGENTRUN_LOG_FORMAT": "JSON",
        "AGENTRUN_AUTH": " Off ",
        "AGENTRUN_TLS_CERT": "/certs/server.pem",
        "AGENTRUN_REFLECTION": "0",
    }
    runs = RunsSettings.from_env(environ)
    assert runs.listen_address == "0.0.0.0:7000" and runs.data_dir == Path.home() / "agentrun-data"
    assert runs.database_url == "postgresql+psycopg://u@h/db" and runs.migrate_on_start and not runs.reflection
    assert runs.max_record_bytes == 2048 and runs.shutdown_grace_s == 1.5
    assert (runs.log_level, runs.log_format) == ("DEBUG", "json")
    assert runs.auth.mode is AuthMode.OFF and runs.tls.cert == Path("/certs/server.pem")


def test_execution_variables_fall_back_as_documented() -> None:
    execution = ExecutionSettings.from_env(
        {
            "GOOGLE_API_KEY": "google-key",
            "AGENTRUN_TLS_CA": "/ca.pem",
            "AGENTRUN_RUNS_SERVICE_TLS_CLIENT_CERT": "/client.pem",
            "AGENTRUN_TLS_CLIENT_CERT": "/shared.pem",
            "AGENTRUN_REDACT_KEYS": "ssn, iban",
            "AGENTRUN_REDACT_PATTERNS": r'["\\bacct-[0-9]{8}\\b", "x+"]',
            "AGENTRUN_OUTBOX_PATH": "/var/outbox.db",
        }
    )
    assert execution.gemini_api_key == "google-key" and "google-key" not in repr(execution)
    assert execution.runs_service_tls.ca == Path("/ca.pem")  # the shared variable
    assert execution.runs_service_tls.cert == Path("/client.pem")  # the specific one wins
    assert execution.redact_keys == ("ssn", "iban")
    assert execution.redact_patterns == (r"\bacct-[0-9]{8}\b", "x+")
    assert execution.resolved_outbox_path == Path("/var/outbox.db")
    both = ExecutionSettings.from_env({"GEMINI_API_KEY": "gemini", "GOOGLE_API_KEY": "google"})
    assert both.gemini_api_key == "gemini"


def test_an_empty_variable_counts_as_unset() -> None:
    runs = RunsSettings.from_env({"AGENTRUN_MAX_RECORD_BYTES": "", "AGENTRUN_AUTH": "", "AGENTRUN_RUNS_ADDRESS": ""})
    assert runs == RunsSettings()


@pytest.mark.parametrize(
    ("settings", "environ", "message"),
    [
        (
            RunsSettings,
            {"AGENTRUN_MAX_RECORD_BYTES": "10"},
            "AGENTRUN_MAX_RECORD_BYTES must be at least 1024, got '10'",
        ),
        (RunsSettings, {"AGENTRUN_MAX_RECORD_BYTES": "8M"}, "AGENTRUN_MAX_RECORD_BYTES must be an integer, got '8M'"),
        (RunsSettings, {"AGENTRUN_MIGRATE_ON_START": "maybe"}, "AGENTRUN_MIGRATE_ON_START must be true or false"),
        (RunsSettings, {"AGENTRUN_AUTH": "ldap"}, "AGENTRUN_AUTH must be 'tokens' or 'off', got 'ldap'"),
        (RunsSettings, {"AGENTRUN_LOG_FORMAT": "xml"}, "AGENTRUN_LOG_FORMAT must be 'json', 'text' or 'auto'"),
        (ExecutionSettings, {"AGENTRUN_MODEL_TIMEOUT_S": "soon"}, "AGENTRUN_MODEL_TIMEOUT_S must be a number"),
        (
            ExecutionSettings,
            {"AGENTRUN_MAX_STREAMS_PER_USER": "-1"},
            "AGENTRUN_MAX_STREAMS_PER_USER must be at least 0",
        ),
        (ExecutionSettings, {"AGENTRUN_REDACT_KEYS": "(["}, "AGENTRUN_REDACT_KEYS holds '(['"),
        (
            ExecutionSettings,
            {"AGENTRUN_REDACT_PATTERNS": "[1]"},
            "AGENTRUN_REDACT_PATTERNS must be a JSON array of strings",
        ),
        (
            ExecutionSettings,
            {"AGENTRUN_EXECUTION_DATABASE_URL": "sqlite:///runs.db"},
            "AGENTRUN_EXECUTION_DATABASE_URL must be a PostgreSQL URL",
        ),
        (ExecutionSettings, {"AGENTRUN_TAKEOVER_TIMEOUT_S": "0"}, "AGENTRUN_TAKEOVER_TIMEOUT_S must be greater than 0"),
        (TelemetrySettings, {"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER names an unsupported exporter"),
        (TelemetrySettings, {"AGENTRUN_PROMETHEUS_PORT": "http"}, "AGENTRUN_PROMETHEUS_PORT must be an integer"),
        (TelemetrySettings, {"AGENTRUN_PROMETHEUS_PORT": "70000"}, "AGENTRUN_PROMETHEUS_PORT must be at most 65535"),
        (ProcessSettings, {"AGENTRUN_EVENT_LOOP": "trio"}, "AGENTRUN_EVENT_LOOP must be 'auto', 'uvloop' or 'asyncio'"),
        (ModelGuardSettings, {"AGENTRUN_FORBID_REAL_MODEL": "maybe"}, "AGENTRUN_FORBID_REAL_MODEL must be true or"),
        (ExportSettings, {"AGENTRUN_EXPORT_CHECKPOINT_S": "-1"}, "AGENTRUN_EXPORT_CHECKPOINT_S must be at least 0"),
        (ExportSettings, {"AGENTRUN_EXPORT_CHECKPOINT_S": "often"}, "AGENTRUN_EXPORT_CHECKPOINT_S must be a number"),
        (ServeSettings, {"AGENTRUN_AUTH": "ldap"}, "AGENTRUN_AUTH must be 'tokens' or 'off', got 'ldap'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_variable(
    settings: type[EnvSettings], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings.from_env(environ)
    assert str(caught.value).startswith(message), str(caught.value)
    assert "\n" not in str(caught.value)


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRUN_RUNS_ADDRESS", "0.0.0.0:1")
    monkeypatch.setenv("AGENTRUN_AUTH", "off")
    monkeypatch.setenv("AGENTRUN_MAX_RECORD_BYTES", "1")  # would be refused if it were read
    assert RunsSettings(data_dir=Path("/x")) == RunsSettings(data_dir=Path("/x"), auth=AuthSettings())
    assert RunsSettings().listen_address == "127.0.0.1:50051"
    assert RunsSettings.from_env({"AGENTRUN_AUTH": "off"}).listen_address == "127.0.0.1:50051"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRUN_RUNS_ADDRESS", "127.0.0.1:1111")
    monkeypatch.setenv("AGENTRUN_DATA_DIR", "/from-env")
    monkeypatch.setenv("AGENTRUN_LOG_FORMAT", "json")
    settings = runs_settings(address="127.0.0.1:2222", migrate=True, create_database=True)
    assert settings.listen_address == "127.0.0.1:2222" and settings.data_dir == Path("/from-env")
    assert settings.migrate_on_start and settings.create_database and settings.log_format == "json"
    monkeypatch.setenv("AGENTRUN_RUNS_SERVICE_TARGET", "runs:1")
    execution = execution_settings(runs_service="runs:2", data_dir=Path("/flag"))
    assert execution.runs_service_target == "runs:2" and execution.data_dir == Path("/flag")


def test_cli_settings_come_from_the_environment_and_the_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTRUN_TOKEN", "agr_env")
    monkeypatch.setenv("AGENTRUN_RUNS_TARGET", "runs:1")
    settings = CliSettings.from_env().with_overrides(runs_target="runs:2", tls_ca=None)
    assert (settings.token, settings.runs_target, settings.tls_ca) == ("agr_env", "runs:2", None)
    assert "agr_env" not in repr(settings)


def _run(*argv: str, env: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *argv], env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("argv", "program"),
    [
        (["-m", "runs_service"], "agentrun-runs-service"),
        (["-m", "runs_service", "migrate"], "agentrun-runs-service"),
        (["-m", "execution_service"], "agentrun-execution-service"),
    ],
)
def test_the_commands_exit_2_with_one_line_on_a_bad_variable(argv: list[str], program: str, tmp_path: Path) -> None:
    done = _run(*argv, env={"AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_SHUTDOWN_GRACE_S": "soon"})
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"{program}: AGENTRUN_SHUTDOWN_GRACE_S must be a number, got 'soon'\n"


def test_agentrun_serve_exits_2_with_one_line_on_a_bad_variable(tmp_path: Path) -> None:
    done = _run("-m", "agentrun_cli", "serve", "runs", env={"AGENTRUN_MAX_RECORD_BYTES": "x"})
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: AGENTRUN_MAX_RECORD_BYTES must be an integer, got 'x'\n"


def test_the_export_exits_2_with_one_line_on_a_bad_checkpoint_interval(tmp_path: Path) -> None:
    env = {"AGENTRUN_EXPORT_CHECKPOINT_S": "-1", "AGENTRUN_RUNS_TARGET": "127.0.0.1:9"}
    done = _run("-m", "agentrun_cli", "runs", "export", "--output", str(tmp_path / "out.jsonl"), env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr == "error: AGENTRUN_EXPORT_CHECKPOINT_S must be at least 0.0, got '-1'\n"


def test_services_exit_2_with_one_line_on_a_bad_event_loop(tmp_path: Path) -> None:
    done = _run("-m", "runs_service", env={"AGENTRUN_DATA_DIR": str(tmp_path), "AGENTRUN_EVENT_LOOP": "trio"})
    assert done.returncode == 2, done.stderr
    assert "AGENTRUN_EVENT_LOOP must be 'auto', 'uvloop' or 'asyncio', got 'trio'" in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1, done.stderr


def test_a_bad_flag_value_is_a_usage_error() -> None:
    done = _run("-m", "runs_service", "--log-format", "xml", env={})
    assert done.returncode == 2 and "--log-format" in done.stderr


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://agent:s3cret-pw@db:3306/runs", "mysql://agent:***@db:3306/runs"),
        ("mysql://agent:p@ss3cret@db/runs", "mysql://agent:***@db/runs"),
        ("mysql://agent:pa/ss3cret@db/runs", "mysql://agent:***@db/runs"),
        ("mysql://db/runs?user=agent&password=s3cret&ssl=1", "mysql://db/runs?user=agent&password=***&ssl=1"),
        ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
    ],
)
def test_a_bad_url_is_echoed_without_its_password(url: str, shown: str) -> None:
    with pytest.raises(SettingsError) as caught:
        ExecutionSettings.from_env({"AGENTRUN_EXECUTION_DATABASE_URL": url})
    assert "s3cret" not in str(caught.value)
    assert str(caught.value).endswith(f"got {shown!r}"), str(caught.value)


def test_current_settings_follow_the_environment_and_are_parsed_once_per_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGENTRUN_FORBID_REAL_MODEL", "1")
    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "http://127.0.0.1:9")
    first = ModelGuardSettings.current()
    assert first.forbid_real_model and first.gemini_base_url == "http://127.0.0.1:9"
    assert ModelGuardSettings.current() is first  # nothing changed: not parsed again
    monkeypatch.setenv("AGENTRUN_FORBID_REAL_MODEL", "0")
    assert not ModelGuardSettings.current().forbid_real_model  # a change is seen at once
    monkeypatch.setenv("AGENTRUN_FORBID_REAL_MODEL", "maybe")
    for _ in range(2):  # a bad value is refused every time, never remembered
        with pytest.raises(SettingsError, match="AGENTRUN_FORBID_REAL_MODEL must be true or false"):
            ModelGuardSettings.current()
