"""ExecutionService settings: environment variables, overridden by command-line flags (docs/configuration.md)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, field_validator
from pydantic_settings import NoDecode

from agentrun_core.auth.settings import AuthSettings
from agentrun_core.contract import RECORD_RUNS_MAX_RUNS
from agentrun_core.periods import parse_period
from agentrun_core.settings import ClientTarget, EnvSettings, ListenAddress, LogFormat, LogLevel, UserPath, setting
from agentrun_core.tls import ClientTlsSettings, ServerTlsSettings


def _regex_list(separator: str | None) -> Any:
    """Regexes from text: a JSON array of strings, or the text split on `separator` (None: one regex)."""

    def parse(value: Any) -> Any:
        import json
        import re

        if not isinstance(value, str):
            return value
        raw = value.strip()
        if not raw:
            return ()
        if raw.startswith("["):
            try:
                items = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ValueError(f"must be a JSON array of regular expressions ({exc.msg})") from None
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise ValueError("must be a JSON array of strings")
            patterns = [i for i in items if i]
        else:
            patterns = [p.strip() for p in raw.split(separator)] if separator else [raw]
            patterns = [p for p in patterns if p]
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"holds {pattern[:80]!r}, which is not a valid regular expression ({exc})") from None
        return tuple(patterns)

    return BeforeValidator(parse)


def _kept_for(value: Any) -> Any:
    if isinstance(value, str):
        if value.strip().lower() == "forever":
            return None
        try:
            value = parse_period(value)
        except ValueError as exc:
            raise ValueError(f"must be forever or a period: it {exc}") from None
    if isinstance(value, timedelta) and value <= timedelta(0):
        raise ValueError("must be longer than 0s (forever keeps everything)")
    return value


# How long finished durable runs stay in the execution database: a period (30d, 12h, ...) or `forever` (None).
KeptFor = Annotated[timedelta | None, BeforeValidator(_kept_for)]
# AGENTRUN_REDACT_KEYS: comma-separated (or a JSON array); AGENTRUN_REDACT_PATTERNS: one regex (or a JSON array).
KeyRegexes = Annotated[tuple[str, ...], NoDecode, _regex_list(",")]
ValueRegexes = Annotated[tuple[str, ...], NoDecode, _regex_list(None)]


class RunsServiceTlsSettings(ClientTlsSettings):
    """TLS of the channel to RunsService: AGENTRUN_RUNS_SERVICE_TLS_*, falling back to the shared AGENTRUN_TLS_*."""

    ca: UserPath | None = setting(None, "AGENTRUN_RUNS_SERVICE_TLS_CA", "AGENTRUN_TLS_CA")
    cert: UserPath | None = setting(None, "AGENTRUN_RUNS_SERVICE_TLS_CLIENT_CERT", "AGENTRUN_TLS_CLIENT_CERT")
    key: UserPath | None = setting(None, "AGENTRUN_RUNS_SERVICE_TLS_CLIENT_KEY", "AGENTRUN_TLS_CLIENT_KEY")
    server_name: str = setting("", "AGENTRUN_RUNS_SERVICE_TLS_SERVER_NAME")


class ModelGuardSettings(EnvSettings):
    """The test-wide switch that forbids real model calls (execution_service.model.guard), read where a Gemini
    provider is made or called, whoever made it; and the endpoint the SDK falls back to without an explicit one."""

    forbid_real_model: bool = setting(False, "AGENTRUN_FORBID_REAL_MODEL")
    gemini_base_url: str = setting("", "GOOGLE_GEMINI_BASE_URL")


class ExecutionSettings(EnvSettings):
    listen_address: ListenAddress = setting("127.0.0.1:50052", "AGENTRUN_EXECUTION_ADDRESS")
    runs_service_target: ClientTarget = setting("127.0.0.1:50051", "AGENTRUN_RUNS_SERVICE_TARGET")
    agents_dir: UserPath = setting(Path("examples/agents"), "AGENTRUN_AGENTS_DIR")
    mcp_config: UserPath = setting(Path("examples/mcp.json"), "AGENTRUN_MCP_CONFIG")
    data_dir: UserPath = setting(Path("data"), "AGENTRUN_DATA_DIR")
    # Empty means <data_dir>/outbox.db. One file per instance: it also remembers this instance's live runs.
    outbox_path: UserPath | None = setting(None, "AGENTRUN_OUTBOX_PATH")
    # RecordRuns batches the outbox sends: at most this many records and bytes per call (a larger record goes alone).
    outbox_batch_records: int = setting(100, "AGENTRUN_OUTBOX_BATCH_RECORDS", ge=1, le=RECORD_RUNS_MAX_RUNS)
    outbox_batch_bytes: int = setting(4 * 1024 * 1024, "AGENTRUN_OUTBOX_BATCH_BYTES", ge=1024)
    default_model: str = setting("gemini-2.5-flash", "AGENTRUN_DEFAULT_MODEL")
    gemini_api_key: str = setting("", "GEMINI_API_KEY", "GOOGLE_API_KEY", repr=False)
    gemini_base_url: str = setting("", "GOOGLE_GEMINI_BASE_URL")
    model_stream: bool = setting(True, "AGENTRUN_MODEL_STREAM")
    model_timeout_s: float = setting(120.0, "AGENTRUN_MODEL_TIMEOUT_S", ge=0.1)
    model_retry_attempts: int = setting(4, "AGENTRUN_MODEL_MAX_ATTEMPTS", ge=1)
    model_retry_initial_delay_s: float = setting(0.5, "AGENTRUN_MODEL_RETRY_INITIAL_DELAY_S", ge=0)
    model_retry_max_delay_s: float = setting(20.0, "AGENTRUN_MODEL_RETRY_MAX_DELAY_S", ge=0)
    test_model_latency_s: float = setting(0.0, "AGENTRUN_TEST_MODEL_LATENCY_S", ge=0)
    max_task_bytes: int = setting(100_000, "AGENTRUN_MAX_TASK_BYTES", ge=1)
    # Admission (docs/configuration.md, "Admission"): runs executing at once on this instance (the old name
    # AGENTRUN_MAX_LIVE_RUNS is read too); runs over it wait QUEUED, at most max_queued_runs of them (0: no queue,
    # RESOURCE_EXHAUSTED at once), each at most queue_timeout_s (0: no limit) before it ends TIMED_OUT (QUEUE_TIMEOUT).
    max_concurrent_runs: int = setting(2000, "AGENTRUN_MAX_CONCURRENT_RUNS", "AGENTRUN_MAX_LIVE_RUNS", ge=1)
    max_queued_runs: int = setting(10_000, "AGENTRUN_MAX_QUEUED_RUNS", ge=0)
    queue_timeout_s: float = setting(600.0, "AGENTRUN_QUEUE_TIMEOUT_S", ge=0)
    max_parallel_tools: int = setting(8, "AGENTRUN_MAX_PARALLEL_TOOLS", ge=1)
    max_message_bytes: int = setting(4 * 1024 * 1024, "AGENTRUN_MAX_MESSAGE_BYTES", ge=1024)
    max_tool_result_bytes: int = setting(64 * 1024, "AGENTRUN_MAX_TOOL_RESULT_BYTES", ge=256)
    # The largest JSON-RPC message read from a stdio MCP server (one line; a 20 MB result is ~40 MB on the wire).
    mcp_max_message_bytes: int = setting(64 * 1024 * 1024, "AGENTRUN_MCP_MAX_MESSAGE_BYTES", ge=1024)
    # How long an MCP server may take to start: the process (or HTTP session), initialize and tools/list. A server
    # started by npx or uvx downloads itself first, which may take a minute.
    mcp_connect_timeout_s: float = setting(60.0, "AGENTRUN_MCP_CONNECT_TIMEOUT_S", ge=0.1)
    redaction_enabled: bool = setting(True, "AGENTRUN_REDACTION")
    # Extra secret-key and secret-value regexes, added to the defaults (AGENTRUN_REDACT_KEYS / _PATTERNS).
    redact_keys: KeyRegexes = setting((), "AGENTRUN_REDACT_KEYS")
    redact_patterns: ValueRegexes = setting((), "AGENTRUN_REDACT_PATTERNS")
    # Concurrent ExecuteAgent + WatchRun streams per user (0: no cap) and ExecuteAgent calls per user per minute
    # (token bucket holding up to rate_limit_burst; 0: no limit).
    max_streams_per_user: int = setting(16, "AGENTRUN_MAX_STREAMS_PER_USER", ge=0)
    rate_limit_per_minute: float = setting(60.0, "AGENTRUN_RATE_LIMIT_PER_MINUTE", ge=0)
    rate_limit_burst: int = setting(20, "AGENTRUN_RATE_LIMIT_BURST", ge=1)
    reflection: bool = setting(True, "AGENTRUN_REFLECTION")
    # Bearer-token authentication and TLS of this service, and how it authenticates to RunsService: docs/security.md
    auth: AuthSettings = setting(default_factory=AuthSettings)
    tls: ServerTlsSettings = setting(default_factory=ServerTlsSettings)
    runs_service_token: str = setting("", "AGENTRUN_RUNS_SERVICE_TOKEN", repr=False)
    runs_service_tls: ClientTlsSettings = setting(default_factory=RunsServiceTlsSettings)
    shutdown_grace_s: float = setting(20.0, "AGENTRUN_SHUTDOWN_GRACE_S", ge=0)
    # Durable mode (docs/architecture.md, "Durable mode"): a postgresql:// URL turns it on. Runs are DBOS workflows
    # in that database, any replica serves any run, and a dead replica's runs resume elsewhere.
    execution_database_url: str = setting("", "AGENTRUN_EXECUTION_DATABASE_URL", repr=False)
    # This replica's stable identity (its DBOS executor id): a restart with the same id resumes its own runs.
    # Empty: the host name.
    replica_id: str = setting("", "AGENTRUN_REPLICA_ID", max_length=100)
    # Durable mode: how often a replica writes its heartbeat, and how long a replica may stay silent before a
    # survivor takes its runs over.
    heartbeat_interval_s: float = setting(5.0, "AGENTRUN_HEARTBEAT_INTERVAL_S", gt=0)
    takeover_timeout_s: float = setting(30.0, "AGENTRUN_TAKEOVER_TIMEOUT_S", gt=0)
    # Durable mode's shared queue (docs/deployment.md, "Admission and queues"): at most this many runs execute at
    # once over all replicas (0: no global limit, only AGENTRUN_MAX_CONCURRENT_RUNS per replica), and how often each
    # replica looks for a queued run to take when nothing woke it (a run entering the queue on any replica and a slot
    # freeing on this one wake it at once: execution_service.durable.queue_wakeups).
    global_max_concurrent_runs: int = setting(0, "AGENTRUN_GLOBAL_MAX_CONCURRENT_RUNS", ge=0)
    queue_polling_interval_s: float = setting(1.0, "AGENTRUN_QUEUE_POLLING_INTERVAL_S", gt=0, le=60)
    # How often a replica looks for runs DBOS gave up on (too many recoveries) to end them FAILED.
    given_up_check_interval_s: float = setting(30.0, "AGENTRUN_GIVEN_UP_CHECK_INTERVAL_S", gt=0)
    # How long a finished durable run's journal and workflow stay in the execution database (execution_service.
    # durable.retention; RunsService keeps the run's record under its own retention), and how often a replica looks.
    execution_retention: KeptFor = setting(timedelta(days=7), "AGENTRUN_EXECUTION_RETENTION")
    execution_retention_interval_s: float = setting(600.0, "AGENTRUN_EXECUTION_RETENTION_INTERVAL_S", gt=0)
    # Scheduled runs (docs/agents.md, "Schedules"): whether this replica runs the agents' schedules; how late a tick
    # may be handled and still count as on time; how often the agents directory is re-read for schedule changes.
    scheduler_enabled: bool = setting(True, "AGENTRUN_SCHEDULER")
    scheduler_grace_s: float = setting(60.0, "AGENTRUN_SCHEDULER_GRACE_S", ge=0)
    scheduler_refresh_s: float = setting(5.0, "AGENTRUN_SCHEDULER_REFRESH_S", ge=0.1)
    log_level: LogLevel = setting("INFO", "AGENTRUN_LOG_LEVEL")
    log_format: LogFormat = setting("auto", "AGENTRUN_LOG_FORMAT")

    @field_validator("execution_database_url")
    @classmethod
    def _postgresql_url(cls, value: str) -> str:
        value = value.strip()
        if value and value.split("://", 1)[0].split("+", 1)[0] not in ("postgresql", "postgres"):
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user:password@host:5432/database): durable mode runs on "
                "PostgreSQL only"
            )
        return value

    @property
    def durable(self) -> bool:
        return bool(self.execution_database_url)

    @property
    def resolved_replica_id(self) -> str:
        import socket

        return self.replica_id or socket.gethostname()

    @property
    def resolved_outbox_path(self) -> Path:
        return self.outbox_path or self.data_dir / "outbox.db"
