"""ExecutionService settings: environment variables, overridden by command-line flags (docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from agentrun_core.auth.settings import AuthSettings
from agentrun_core.settings import SettingsError, env_bool, env_float, env_int, env_path, env_str
from agentrun_core.tls import ClientTlsSettings, ServerTlsSettings


@dataclass(frozen=True, slots=True)
class ExecutionSettings:
    listen_address: str = "127.0.0.1:50052"
    runs_service_target: str = "127.0.0.1:50051"
    agents_dir: Path = Path("examples/agents")
    mcp_config: Path = Path("examples/mcp.json")
    data_dir: Path = Path("data")
    # Empty means <data_dir>/outbox.db. One file per instance: it also remembers this instance's live runs.
    outbox_path: Path | None = None
    # RecordRuns batches the outbox sends: at most this many records and bytes per call (a larger record goes alone).
    outbox_batch_records: int = 100
    outbox_batch_bytes: int = 4 * 1024 * 1024
    default_model: str = "gemini-2.5-flash"
    gemini_api_key: str = ""
    gemini_base_url: str = ""
    model_stream: bool = True
    model_timeout_s: float = 120.0
    model_retry_attempts: int = 4
    model_retry_initial_delay_s: float = 0.5
    model_retry_max_delay_s: float = 20.0
    test_model_latency_s: float = 0.0
    max_task_bytes: int = 100_000
    max_live_runs: int = 2000
    max_parallel_tools: int = 8
    max_message_bytes: int = 4 * 1024 * 1024
    max_tool_result_bytes: int = 64 * 1024
    redaction_enabled: bool = True
    # Extra secret-key and secret-value regexes, added to the defaults (AGENTRUN_REDACT_KEYS / _PATTERNS).
    redact_keys: tuple[str, ...] = ()
    redact_patterns: tuple[str, ...] = ()
    # Concurrent ExecuteAgent + WatchRun streams per user (0: no cap) and ExecuteAgent calls per user per minute
    # (token bucket holding up to rate_limit_burst; 0: no limit).
    max_streams_per_user: int = 16
    rate_limit_per_minute: float = 60.0
    rate_limit_burst: int = 20
    reflection: bool = True
    # Bearer-token authentication and TLS of this service, and how it authenticates to RunsService: docs/security.md
    auth: AuthSettings = field(default_factory=AuthSettings)
    tls: ServerTlsSettings = field(default_factory=ServerTlsSettings)
    runs_service_token: str = ""
    runs_service_tls: ClientTlsSettings = field(default_factory=ClientTlsSettings)
    shutdown_grace_s: float = 20.0
    log_level: str = "INFO"
    log_format: str = "auto"

    @classmethod
    def from_env(cls) -> ExecutionSettings:
        base = cls()
        outbox = env_str("AGENTRUN_OUTBOX_PATH", "")
        return cls(
            listen_address=env_str("AGENTRUN_EXECUTION_ADDRESS", base.listen_address),
            runs_service_target=env_str("AGENTRUN_RUNS_SERVICE_TARGET", base.runs_service_target),
            agents_dir=env_path("AGENTRUN_AGENTS_DIR", base.agents_dir),
            mcp_config=env_path("AGENTRUN_MCP_CONFIG", base.mcp_config),
            data_dir=env_path("AGENTRUN_DATA_DIR", base.data_dir),
            outbox_path=Path(outbox) if outbox else None,
            outbox_batch_records=env_int("AGENTRUN_OUTBOX_BATCH_RECORDS", base.outbox_batch_records, minimum=1),
            outbox_batch_bytes=env_int("AGENTRUN_OUTBOX_BATCH_BYTES", base.outbox_batch_bytes, minimum=1024),
            default_model=env_str("AGENTRUN_DEFAULT_MODEL", base.default_model),
            gemini_api_key=env_str("GEMINI_API_KEY", env_str("GOOGLE_API_KEY", "")),
            gemini_base_url=env_str("GOOGLE_GEMINI_BASE_URL", ""),
            model_stream=env_bool("AGENTRUN_MODEL_STREAM", base.model_stream),
            model_timeout_s=env_float("AGENTRUN_MODEL_TIMEOUT_S", base.model_timeout_s, minimum=0.1),
            model_retry_attempts=env_int("AGENTRUN_MODEL_MAX_ATTEMPTS", base.model_retry_attempts, minimum=1),
            model_retry_initial_delay_s=env_float(
                "AGENTRUN_MODEL_RETRY_INITIAL_DELAY_S", base.model_retry_initial_delay_s, minimum=0
            ),
            model_retry_max_delay_s=env_float(
                "AGENTRUN_MODEL_RETRY_MAX_DELAY_S", base.model_retry_max_delay_s, minimum=0
            ),
            test_model_latency_s=env_float("AGENTRUN_TEST_MODEL_LATENCY_S", base.test_model_latency_s, minimum=0),
            max_task_bytes=env_int("AGENTRUN_MAX_TASK_BYTES", base.max_task_bytes, minimum=1),
            max_live_runs=env_int("AGENTRUN_MAX_LIVE_RUNS", base.max_live_runs, minimum=1),
            max_parallel_tools=env_int("AGENTRUN_MAX_PARALLEL_TOOLS", base.max_parallel_tools, minimum=1),
            max_message_bytes=env_int("AGENTRUN_MAX_MESSAGE_BYTES", base.max_message_bytes, minimum=1024),
            max_tool_result_bytes=env_int("AGENTRUN_MAX_TOOL_RESULT_BYTES", base.max_tool_result_bytes, minimum=256),
            redaction_enabled=env_bool("AGENTRUN_REDACTION", base.redaction_enabled),
            redact_keys=env_regex_list("AGENTRUN_REDACT_KEYS", separator=","),
            redact_patterns=env_regex_list("AGENTRUN_REDACT_PATTERNS", separator=None),
            max_streams_per_user=env_int("AGENTRUN_MAX_STREAMS_PER_USER", base.max_streams_per_user, minimum=0),
            rate_limit_per_minute=env_float("AGENTRUN_RATE_LIMIT_PER_MINUTE", base.rate_limit_per_minute, minimum=0),
            rate_limit_burst=env_int("AGENTRUN_RATE_LIMIT_BURST", base.rate_limit_burst, minimum=1),
            reflection=env_bool("AGENTRUN_REFLECTION", base.reflection),
            auth=AuthSettings.from_env(),
            tls=ServerTlsSettings.from_env(),
            runs_service_token=env_str("AGENTRUN_RUNS_SERVICE_TOKEN", ""),
            runs_service_tls=_runs_service_tls(),
            shutdown_grace_s=env_float("AGENTRUN_SHUTDOWN_GRACE_S", base.shutdown_grace_s, minimum=0),
            log_level=env_str("AGENTRUN_LOG_LEVEL", base.log_level),
            log_format=env_str("AGENTRUN_LOG_FORMAT", base.log_format),
        )

    def with_overrides(self, **changes: object) -> ExecutionSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    @property
    def resolved_outbox_path(self) -> Path:
        return self.outbox_path or self.data_dir / "outbox.db"


def env_regex_list(name: str, *, separator: str | None) -> tuple[str, ...]:
    """Regexes from `name`: a JSON array of strings, or the text split on `separator` (None: one regex)."""
    import json
    import re

    raw = env_str(name, "").strip()
    if not raw:
        return ()
    if raw.startswith("["):
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{name} must be a JSON array of regular expressions: {exc.msg}") from None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise SettingsError(f"{name} must be a JSON array of strings")
        patterns = [i for i in items if i]
    else:
        patterns = [p.strip() for p in raw.split(separator)] if separator else [raw]
        patterns = [p for p in patterns if p]
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SettingsError(f"{name}: {pattern!r} is not a valid regular expression ({exc})") from None
    return tuple(patterns)


def _runs_service_tls() -> ClientTlsSettings:
    """AGENTRUN_RUNS_SERVICE_TLS_* for the channel to RunsService, falling back to the shared AGENTRUN_TLS_* ones."""

    def path(specific: str, shared: str) -> Path | None:
        value = env_str(specific, "") or env_str(shared, "")
        return Path(value).expanduser() if value else None

    return ClientTlsSettings(
        ca=path("AGENTRUN_RUNS_SERVICE_TLS_CA", "AGENTRUN_TLS_CA"),
        cert=path("AGENTRUN_RUNS_SERVICE_TLS_CLIENT_CERT", "AGENTRUN_TLS_CLIENT_CERT"),
        key=path("AGENTRUN_RUNS_SERVICE_TLS_CLIENT_KEY", "AGENTRUN_TLS_CLIENT_KEY"),
        server_name=env_str("AGENTRUN_RUNS_SERVICE_TLS_SERVER_NAME", ""),
    )
