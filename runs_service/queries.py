"""RunsService's queries and answers: the caller's visibility scope, and the shapes of commands, queries and results.

Servicers translate protobuf to these types and back (runs_service.api); storage implements them
(runs_service.storage). Nothing here imports generated code.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from agentrun_core.domain import Cost, ExecutionStep, Run, RunStatus, TokenUsage
from runs_service.errors import InvalidArgument

# --- who is asking ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scope:
    """Which runs a caller may see. `user=None` means every run (admins and the execution service)."""

    user: str | None = None

    @classmethod
    def everything(cls) -> Scope:
        return cls(user=None)


# --- commands and queries ---------------------------------------------------------------------------------


class RecordOutcome(enum.StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"
    IGNORED = "IGNORED"
    # RecordRuns only: the run is invalid (or the database refused its values); nothing of it was stored.
    REJECTED = "REJECTED"


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why one run of a RecordRuns batch was not stored: what RecordRun would have answered."""

    reason: str
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class RecordResult:
    outcome: RecordOutcome
    # The status stored after the call; None when REJECTED.
    stored_status: RunStatus | None
    rejection: Rejection | None = None

    @classmethod
    def rejected(cls, reason: str, field: str, message: str) -> RecordResult:
        return cls(RecordOutcome.REJECTED, None, Rejection(reason, field, message))


class OrderField(enum.StrEnum):
    START_TIME = "start_time"
    DURATION = "duration"
    TOTAL_TOKENS = "total_tokens"
    COST = "cost"


@dataclass(frozen=True, slots=True)
class Ordering:
    field: OrderField = OrderField.START_TIME
    descending: bool = True


DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
DEFAULT_STEP_PAGE_SIZE = 100


@dataclass(frozen=True, slots=True)
class ListRunsQuery:
    filter: str = ""
    order_by: str = ""
    page_size: int = 0
    page_token: str = ""
    full: bool = False


@dataclass(frozen=True, slots=True)
class RunPage:
    runs: list[Run]
    # Continues after the page's last run; empty on the last page.
    next_page_token: str
    # page_token_after(i): the token that continues right after runs[i] (to send fewer runs than the page holds).
    page_token_after: Callable[[int], str] = field(default=lambda index: "")


@dataclass(frozen=True, slots=True)
class StepPage:
    steps: list[ExecutionStep]
    next_page_token: str
    # page_token_after(i): the token that continues right after steps[i] (to send fewer steps than the page holds).
    page_token_after: Callable[[int], str] = field(default=lambda index: "")


class GroupBy(enum.StrEnum):
    AGENT = "agent"
    MODEL = "model"
    USER = "user"
    DAY = "day"
    STATUS = "status"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class StatsQuery:
    start_time: datetime
    end_time: datetime
    group_by: GroupBy = GroupBy.AGENT
    filter: str = ""


@dataclass(frozen=True, slots=True)
class RunStatsRow:
    key: str
    run_count: int
    completed_count: int
    # completed / terminal runs (0.0 when no run is terminal).
    success_rate: float
    token_usage: TokenUsage
    # The sum of the group's known costs; None when no run of the group has a cost, or when its runs were priced in
    # several currencies (see costs_by_currency).
    cost_total: Decimal | None
    duration_p50: timedelta | None
    duration_p95: timedelta | None
    cost_currency: str = ""
    # The price table the summed costs came from; "A .. B" when the group's runs were priced with several.
    price_table_version: str = ""
    # The largest Run.max_context_window_used of the group (0..1).
    max_context_window_used: float = 0.0
    # The group's known costs summed per currency (ordered by currency code); empty when no run has a cost.
    costs_by_currency: tuple[Cost, ...] = ()


@dataclass(frozen=True, slots=True)
class ToolStatsRow:
    tool_name: str
    server: str
    call_count: int
    error_count: int
    error_rate: float
    duration_p50: timedelta | None
    duration_p95: timedelta | None


# --- composition: run trees and sessions ------------------------------------------------------------------

# GetRun include_descendants returns at most this many descendants (the first by start time).
MAX_DESCENDANTS = 500


@dataclass(frozen=True, slots=True)
class Descendants:
    """The runs under a run (BASIC views, by start time then id); `truncated` when there were more than these."""

    runs: list[Run]
    truncated: bool


class SessionOrderField(enum.StrEnum):
    LAST_RUN_START_TIME = "last_run_start_time"
    START_TIME = "start_time"


@dataclass(frozen=True, slots=True)
class SessionOrdering:
    field: SessionOrderField = SessionOrderField.LAST_RUN_START_TIME
    descending: bool = True


@dataclass(frozen=True, slots=True)
class ListSessionsQuery:
    filter: str = ""
    order_by: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One session (runs with one session_id and one user) and the totals of its runs, each run counted once."""

    session_id: str
    user: str
    run_count: int
    top_level_run_count: int
    agent_names: tuple[str, ...]
    start_time: datetime
    # The latest end among its ended runs; None while none has ended.
    end_time: datetime | None
    last_run_start_time: datetime
    token_usage: TokenUsage
    # Sum of its runs' known costs ("A .. B" price tables when several); None when no run has a cost, or when its
    # runs were priced in several currencies (see cost_by_currency).
    cost: Cost | None
    # Status and id of its latest top-level run; None / "" when it has no top-level run.
    last_status: RunStatus | None
    last_run_id: str
    # Its runs' known costs summed per currency (ordered by currency code); empty when no run has a cost.
    cost_by_currency: tuple[Cost, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionPage:
    sessions: list[SessionSummary]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class ExportQuery:
    filter: str = ""
    full: bool = False
    # From a previous ExportBatch of the same filter and caller: resume right after it.
    resume_cursor: str = ""
    count_total: bool = False


@dataclass(frozen=True, slots=True)
class ExportBatch:
    """The next runs of an export in (start_time, id) order."""

    runs: list[Run]
    # cursor_after(i): the opaque cursor that resumes the export right after runs[i].
    cursor_after: Callable[[int], str]
    # Only in the first batch, when asked: matching runs after the resume cursor when the export started.
    total_count: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteRunsQuery:
    filter: str = ""
    dry_run: bool = False
    # Deliberately every run in scope; the filter must then be empty (an empty filter alone is refused).
    match_all: bool = False
    # Also the runs that have not finished (RUNNING, QUEUED), which are kept otherwise.
    include_unfinished: bool = False

    def checked_filter(self) -> str:
        """The filter text; InvalidArgument unless exactly one of a filter and match_all was given."""
        text = self.filter.strip()
        if not text and not self.match_all:
            raise InvalidArgument(
                "filter",
                "is required: name the runs to delete (e.g. 'start_time < \"2026-01-01T00:00:00Z\"'), "
                "or set match_all to delete every run you may delete",
            )
        if text and self.match_all:
            raise InvalidArgument("match_all", "must not be set together with a filter")
        return text


@dataclass(frozen=True, slots=True)
class DeleteAnswer:
    # Runs deleted, or with dry_run, runs that would be deleted now.
    run_count: int
    # With dry_run: a few of the matching run ids, oldest first.
    sample_run_ids: list[str] = field(default_factory=list)
    # Matching runs kept because they have not finished (without include_unfinished).
    unfinished_count: int = 0


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Normalised page_size (already defaulted and capped) and raw token."""

    size: int
    token: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def normalise_page_size(value: int, default: int = DEFAULT_PAGE_SIZE, field_name: str = "page_size") -> int:
    if value < 0:
        raise InvalidArgument(field_name, f"must not be negative, got {value}")
    if value == 0:
        return default
    return min(value, MAX_PAGE_SIZE)
