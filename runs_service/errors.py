"""RunsService's error tree: every error it reports to a caller, mapped to gRPC codes in runs_service.api.errors.

Each error has a stable `reason` (google.rpc.ErrorInfo). Nothing here imports generated code.
"""

from __future__ import annotations

from agentrun_core.echo import shown


class RunsServiceError(Exception):
    """Base of every error RunsService reports to a caller. `reason` is a stable code (google.rpc.ErrorInfo)."""

    reason = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(RunsServiceError):
    """The request is malformed. `field` names the request field (e.g. "run.execution_steps[3].sequence")."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, reason: str = "INVALID_ARGUMENT") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = reason


class InvalidFilter(InvalidArgument):
    """A filter expression could not be parsed or checked. `position` is the 0-based character offset."""

    def __init__(self, message: str, position: int, *, field: str = "filter") -> None:
        super().__init__(field, f"{message} (at position {position})", reason="INVALID_FILTER")
        self.position = position


class InvalidPageToken(InvalidArgument):
    def __init__(self, message: str, field: str = "page_token") -> None:
        super().__init__(field, message, reason="INVALID_PAGE_TOKEN")


class RunNotFound(RunsServiceError):
    reason = "RUN_NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {shown(run_id)} not found")
        self.run_id = run_id


class PermissionDenied(RunsServiceError):
    reason = "PERMISSION_DENIED"


class StorageUnavailable(RunsServiceError):
    """The database cannot be reached or refused the operation for a transient reason."""

    reason = "STORAGE_UNAVAILABLE"


class QueryTimedOut(RunsServiceError):
    """The database cancelled a query that ran past its statement timeout: retrying the same query would time out
    again; a narrower filter or time range would not."""

    reason = "QUERY_TIMEOUT"


class SumOutOfRange(RunsServiceError):
    """An aggregate over stored runs exceeds what a 64-bit count holds (records accepted before counts were bounded
    can hold absurd values): no retry helps; a narrower filter or deleting those runs does."""

    reason = "SUM_OUT_OF_RANGE"


class SchemaOutdated(RunsServiceError):
    """The database schema is not at the migration head; the message says which command migrates it."""

    reason = "SCHEMA_OUTDATED"


class SchemaNewer(SchemaOutdated):
    """The database was migrated by a newer build: it is at a schema revision this build does not know. Migrating
    cannot help; running the newer build (or downgrading the database with it) does."""

    reason = "SCHEMA_NEWER"
