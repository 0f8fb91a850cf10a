"""RunsService settings: environment variables, overridden by command-line flags (see docs/configuration.md)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

from agentrun_core.auth.settings import AuthSettings
from agentrun_core.settings import SettingsError, env_bool, env_float, env_int, env_path, env_str
from agentrun_core.tls import ServerTlsSettings
from runs_service.retention import FOREVER, RETENTION_ENV, RULES_ENV, RetentionPolicy, parse_period, parse_rules


@dataclass(frozen=True, slots=True)
class RunsSettings:
    listen_address: str = "127.0.0.1:50051"
    data_dir: Path = Path("data")
    # Empty means the SQLite file <data_dir>/runs.db.
    database_url: str = ""
    migrate_on_start: bool = False
    max_record_bytes: int = 8 * 1024 * 1024
    # gRPC-level cap on any received message; above max_record_bytes so oversized records get a clear
    # INVALID_ARGUMENT instead of a bare RESOURCE_EXHAUSTED.
    max_message_bytes: int = 16 * 1024 * 1024
    # Key that signs page tokens. Empty: read (or create once) <data_dir>/page_token_secret.
    page_token_secret: str = ""
    reflection: bool = True
    # Bearer-token authentication (AGENTRUN_AUTH, AGENTRUN_TOKENS_FILE, ...) and TLS (AGENTRUN_TLS_*): docs/security.md
    auth: AuthSettings = field(default_factory=AuthSettings)
    tls: ServerTlsSettings = field(default_factory=ServerTlsSettings)
    # Retention (runs_service.retention): the default period and per-agent / per-label rules; the background purge
    # runs every retention_interval_s, deleting retention_batch_size runs per transaction, pausing between batches at
    # least retention_pause_s and enough to keep the database busy at most retention_duty of the time.
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    retention_interval_s: float = 600.0
    retention_batch_size: int = 200
    retention_pause_s: float = 0.05
    retention_duty: float = 0.1
    shutdown_grace_s: float = 10.0
    log_level: str = "INFO"
    log_format: str = "auto"

    @classmethod
    def from_env(cls) -> RunsSettings:
        base = cls()
        return cls(
            listen_address=env_str("AGENTRUN_RUNS_ADDRESS", base.listen_address),
            data_dir=env_path("AGENTRUN_DATA_DIR", base.data_dir),
            database_url=env_str("DATABASE_URL", base.database_url),
            migrate_on_start=env_bool("AGENTRUN_MIGRATE_ON_START", base.migrate_on_start),
            max_record_bytes=env_int("AGENTRUN_MAX_RECORD_BYTES", base.max_record_bytes, minimum=1024),
            max_message_bytes=env_int("AGENTRUN_MAX_MESSAGE_BYTES", base.max_message_bytes, minimum=1024),
            page_token_secret=env_str("AGENTRUN_PAGE_TOKEN_SECRET", base.page_token_secret),
            reflection=env_bool("AGENTRUN_REFLECTION", base.reflection),
            auth=AuthSettings.from_env(),
            tls=ServerTlsSettings.from_env(),
            retention=RetentionPolicy(
                default=parse_period(env_str(RETENTION_ENV, FOREVER), RETENTION_ENV),
                rules=parse_rules(env_str(RULES_ENV, "")),
            ),
            retention_interval_s=env_float("AGENTRUN_RETENTION_INTERVAL_S", base.retention_interval_s, minimum=1),
            retention_batch_size=env_int("AGENTRUN_RETENTION_BATCH_SIZE", base.retention_batch_size, minimum=1),
            retention_pause_s=env_float("AGENTRUN_RETENTION_PAUSE_S", base.retention_pause_s, minimum=0),
            retention_duty=_retention_duty(),
            shutdown_grace_s=env_float("AGENTRUN_SHUTDOWN_GRACE_S", base.shutdown_grace_s, minimum=0),
            log_level=env_str("AGENTRUN_LOG_LEVEL", base.log_level),
            log_format=env_str("AGENTRUN_LOG_FORMAT", base.log_format),
        )

    def with_overrides(self, **changes: object) -> RunsSettings:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})  # type: ignore[arg-type]

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        from runs_service.storage.engine import database_url_default

        self.data_dir.mkdir(parents=True, exist_ok=True)
        return database_url_default(self.data_dir)

    def resolved_page_token_secret(self) -> bytes:
        if self.page_token_secret:
            return self.page_token_secret.encode()
        path = self.data_dir / "page_token_secret"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def _retention_duty() -> float:
    duty = env_float("AGENTRUN_RETENTION_DUTY", RunsSettings().retention_duty, minimum=0.001)
    if duty > 1:
        raise SettingsError(f"AGENTRUN_RETENTION_DUTY must be between 0.001 and 1 (a share of the time), got {duty}")
    return duty
