"""ExecutionService's error tree; mapped to gRPC codes in one place (execution_service.api.errors)."""

from __future__ import annotations

from agentrun_core.echo import shown


class ExecutionError(Exception):
    reason = "INTERNAL"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(ExecutionError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, *, reason: str = "INVALID_ARGUMENT") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = reason


class Unimplemented(ExecutionError):
    """The request asks for something this service does not do yet (e.g. ExecuteAgent.session_id)."""

    reason = "UNIMPLEMENTED"


class AgentNotFound(ExecutionError):
    reason = "AGENT_NOT_FOUND"


class AgentUnusable(ExecutionError):
    """The agent file loaded but cannot be used for this run (e.g. its template fails to render)."""

    reason = "AGENT_UNUSABLE"


class RunNotFound(ExecutionError):
    reason = "RUN_NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {shown(run_id)} not found among the runs the execution service follows (live and recently "
            "finished ones; in the durable mode, on any replica); a run that finished earlier is read from "
            "RunsService (GetRun)"
        )


class StoredRunNotFound(RunNotFound):
    """ForkRun's original run: read from RunsService, not from the runs this service follows."""

    def __init__(self, run_id: str) -> None:
        ExecutionError.__init__(
            self,
            f"run {shown(run_id)} is not stored in RunsService (or is not yours to see): a fork starts from a "
            "finished run RunsService stores; check the id with GetRun (`agentrun runs show`)",
        )


class RunAlreadyExists(ExecutionError):
    reason = "RUN_ALREADY_EXISTS"

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {shown(run_id)} already exists: a run id names one run, which a retry of the same request "
            "(same caller, agent, task, variables and model) reattaches to while the service still follows it; read "
            "it from RunsService (GetRun), or leave run_id empty (or choose a new one) to start another run"
        )


class RunIdUncheckable(ExecutionError):
    """A client-chosen run id cannot be checked for earlier use: RunsService did not answer. Starting the run anyway
    could execute a run a second time, so the request is refused as UNAVAILABLE (retryable)."""

    reason = "RUNS_SERVICE_UNAVAILABLE"

    def __init__(self, run_id: str, cause: str) -> None:
        super().__init__(
            f"cannot tell whether run id {shown(run_id)} was used before: RunsService did not answer ({cause}); "
            "retry later, or leave run_id empty to start a new run"
        )


class RunAlreadyFinished(ExecutionError):
    reason = "RUN_ALREADY_FINISHED"


class RunStateUnknown(ExecutionError):
    """A run this instance does not hold: whether it exists and has finished is RunsService's to say, and RunsService
    did not answer (UNAVAILABLE, retryable), rather than a NOT_FOUND that could be wrong."""

    reason = "RUNS_SERVICE_UNAVAILABLE"

    def __init__(self, run_id: str, cause: str) -> None:
        super().__init__(
            f"run {shown(run_id)} is not live on this execution service, and RunsService, which knows whether it "
            f"exists and has finished, did not answer ({cause}); retry later"
        )


class TooManyRuns(ExecutionError):
    reason = "TOO_MANY_RUNS"

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueFull(TooManyRuns):
    """Every execution slot is taken and the admission queue holds as many runs as its bound
    (AGENTRUN_MAX_QUEUED_RUNS)."""

    reason = "QUEUE_FULL"


class TooManyStreams(TooManyRuns):
    """The caller has as many ExecuteAgent/WatchRun streams open as allowed (AGENTRUN_MAX_STREAMS_PER_USER)."""

    reason = "TOO_MANY_STREAMS"


class RateLimited(TooManyRuns):
    """The caller started runs faster than allowed (AGENTRUN_RATE_LIMIT_PER_MINUTE)."""

    reason = "RATE_LIMITED"


class ServiceShuttingDown(ExecutionError):
    reason = "SHUTTING_DOWN"


class ScheduleNotFound(ExecutionError):
    """PauseSchedule / ResumeSchedule name a schedule no loaded agent declares."""

    reason = "SCHEDULE_NOT_FOUND"


class PermissionDenied(ExecutionError):
    reason = "PERMISSION_DENIED"


class RunsServiceUnavailable(ExecutionError):
    """RunsService, which holds what every replica shares (schedule state), did not answer."""

    reason = "RUNS_SERVICE_UNAVAILABLE"


class ExecutionDatabaseUnavailable(ExecutionError):
    """Durable mode: the execution database (the shared queue, DBOS's tables) did not answer."""

    reason = "EXECUTION_DATABASE_UNAVAILABLE"


class ExecutionDatabaseUnusable(ExecutionError):
    """Durable mode, at start-up: the execution database cannot be used (the message: its URL, the cause, the fix;
    exit code 4)."""

    reason = "EXECUTION_DATABASE_UNAVAILABLE"


class HistoryUnavailable(ExecutionError):
    """A session's earlier runs or a fork's original could not be read from RunsService (a passing condition)."""

    reason = "RUNS_SERVICE_UNAVAILABLE"


class RunNotForkable(ExecutionError):
    """The run exists but cannot be forked as asked (it has not finished, or it belongs to a session)."""

    reason = "RUN_NOT_FORKABLE"
