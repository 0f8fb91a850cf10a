"""RunsService settings: environment variables, overridden by command-line flags (see docs/configuration.md)."""

from __future__ import annotations

import secrets
from pathlib import Path

from agentrun_core.auth.settings import AuthSettings
from agentrun_core.data_dir import usable_directory
from agentrun_core.settings import EnvSettings, ListenAddress, LogFormat, LogLevel, SettingsError, UserPath, setting
from agentrun_core.tls import ServerTlsSettings
from runs_service.retention import (
    RETENTION_ENV,
    RULES_ENV,
    RetentionPeriod,
    RetentionPolicy,
    RetentionRules,
)
from runs_service.storage.page_tokens import MIN_SECRET_BYTES


class RunsSettings(EnvSettings):
    listen_address: ListenAddress = setting("127.0.0.1:50051", "AGENTRUN_RUNS_ADDRESS")
    data_dir: UserPath = setting(Path("data"), "AGENTRUN_DATA_DIR")
    # Empty means the SQLite file <data_dir>/runs.db.
    database_url: str = setting("", "DATABASE_URL")
    migrate_on_start: bool = setting(False, "AGENTRUN_MIGRATE_ON_START")
    # Create the PostgreSQL database named by database_url when it does not exist (--create-database).
    create_database: bool = False
    max_record_bytes: int = setting(8 * 1024 * 1024, "AGENTRUN_MAX_RECORD_BYTES", ge=1024)
    # gRPC-level cap on any received message; above max_record_bytes so oversized records get a clear
    # INVALID_ARGUMENT instead of a bare RESOURCE_EXHAUSTED.
    max_message_bytes: int = setting(16 * 1024 * 1024, "AGENTRUN_MAX_MESSAGE_BYTES", ge=1024)
    # Key that signs page tokens. Empty: read (or create once) <data_dir>/page_token_secret.
    page_token_secret: str = setting("", "AGENTRUN_PAGE_TOKEN_SECRET")
    reflection: bool = setting(True, "AGENTRUN_REFLECTION")
    # Bearer-token authentication (AGENTRUN_AUTH, AGENTRUN_TOKENS_FILE, ...) and TLS (AGENTRUN_TLS_*): docs/security.md
    auth: AuthSettings = setting(default_factory=AuthSettings)
    tls: ServerTlsSettings = setting(default_factory=ServerTlsSettings)
    # Retention (runs_service.retention): the default period (None: forever) and per-agent / per-label rules; the
    # background purge runs every retention_interval_s, deleting retention_batch_size runs per transaction, pausing
    # between batches at least retention_pause_s and enough to keep the database busy at most retention_duty of the
    # time.
    retention_period: RetentionPeriod = setting(None, RETENTION_ENV)
    retention_rules: RetentionRules = setting((), RULES_ENV)
    retention_interval_s: float = setting(600.0, "AGENTRUN_RETENTION_INTERVAL_S", ge=1)
    retention_batch_size: int = setting(200, "AGENTRUN_RETENTION_BATCH_SIZE", ge=1)
    retention_pause_s: float = setting(0.05, "AGENTRUN_RETENTION_PAUSE_S", ge=0)
    retention_duty: float = setting(0.1, "AGENTRUN_RETENTION_DUTY", gt=0, le=1)
    shutdown_grace_s: float = setting(10.0, "AGENTRUN_SHUTDOWN_GRACE_S", ge=0)
    log_level: LogLevel = setting("INFO", "AGENTRUN_LOG_LEVEL")
    log_format: LogFormat = setting("auto", "AGENTRUN_LOG_FORMAT")

    @property
    def retention(self) -> RetentionPolicy:
        return RetentionPolicy(default=self.retention_period, rules=self.retention_rules)

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        from runs_service.storage.engine import database_url_default

        return database_url_default(usable_directory(self.data_dir))

    def resolved_page_token_secret(self) -> bytes:
        """The page-token key: AGENTRUN_PAGE_TOKEN_SECRET, else <data_dir>/page_token_secret (created once).
        SettingsError (never showing the secret) when it is shorter than MIN_SECRET_BYTES."""
        if self.page_token_secret:
            secret = self.page_token_secret.encode()
            if len(secret) < MIN_SECRET_BYTES:
                raise SettingsError(
                    f"AGENTRUN_PAGE_TOKEN_SECRET must be at least {MIN_SECRET_BYTES} bytes, got "
                    f"{len(secret)} (generate one with `openssl rand -hex 32`)"
                )
            return secret
        path = self.data_dir / "page_token_secret"
        if not path.exists():
            usable_directory(self.data_dir)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        secret = path.read_text().strip().encode()
        if len(secret) < MIN_SECRET_BYTES:
            raise SettingsError(
                f"the page token secret in {path} must be at least {MIN_SECRET_BYTES} bytes, got "
                f"{len(secret)}: delete the file to have a new one generated, or set AGENTRUN_PAGE_TOKEN_SECRET"
            )
        return secret
