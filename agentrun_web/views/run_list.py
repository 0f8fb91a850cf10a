"""The runs page's query, held entirely in the URL (so a view can be shared): the filter box, the quick filters, the
order, the page size, and keyset paging (the page token, plus the tokens of the pages before it for "previous").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from urllib.parse import urlencode

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_cli.filters import quote
from agentrun_web.views import format as fmt

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
# Earlier pages remembered for "previous" (page tokens are url-safe base64, joined with "."; the first page is "").
MAX_BACK_PAGES = 40
ORDERS = (
    ("start_time desc", "newest first"),
    ("start_time asc", "oldest first"),
    ("duration desc", "longest first"),
    ("duration asc", "shortest first"),
    ("total_tokens desc", "most tokens first"),
    ("total_tokens asc", "fewest tokens first"),
    ("cost desc", "most expensive first"),
    ("cost asc", "cheapest first"),
)
DEFAULT_ORDER = ORDERS[0][0]


class QueryError(ValueError):
    """A quick filter or paging value cannot be used; the message says which and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class RunsQuery:
    filter: str = ""
    status: str = ""
    agent: str = ""
    model: str = ""
    order: str = DEFAULT_ORDER
    size: int = DEFAULT_PAGE_SIZE
    page: str = ""
    back: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> RunsQuery:
        """Parses the URL's query; QueryError for a value the page cannot use (the page shows it by its field)."""
        query, problems = cls.parse(params)
        if problems:
            raise problems[0]
        return query

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> tuple[RunsQuery, list[QueryError]]:
        """The URL's query with every value the page cannot use left at its default, and a QueryError for each of
        those (so the form keeps the rest of the view when one value is bad)."""
        problems: list[QueryError] = []
        raw_size = params.get("size", "").strip()
        size = DEFAULT_PAGE_SIZE
        if raw_size:
            if raw_size.isdigit() and 1 <= int(raw_size) <= MAX_PAGE_SIZE:
                size = int(raw_size)
            else:
                problems.append(
                    QueryError("size", f"page size must be a number from 1 to {MAX_PAGE_SIZE}, got {raw_size!r}")
                )
        status = params.get("status", "").strip().upper().removeprefix("RUN_STATUS_")
        if status and status not in fmt.run_statuses():
            problems.append(QueryError("status", f"unknown status {status!r}; one of {', '.join(fmt.run_statuses())}"))
            status = ""
        back = params.get("back", "")
        query = cls(
            filter=params.get("filter", "").strip(),
            status=status,
            agent=params.get("agent", "").strip(),
            model=params.get("model", "").strip(),
            order=params.get("order", "").strip() or DEFAULT_ORDER,
            size=size,
            page=params.get("page", "").strip(),
            back=tuple(back.split(".")) if back or "back" in params else (),
        )
        return query, problems

    def quick_filter_terms(self) -> list[tuple[str, str]]:
        """(form field, filter term) of each quick filter that is set."""
        terms: list[tuple[str, str]] = []
        if self.status:
            terms.append(("status", f"status = {self.status}"))
        if self.agent:
            terms.append(("agent", f"agent_name = {quote(self.agent)}"))
        if self.model:
            terms.append(("model", f"model_name = {quote(self.model)}"))
        return terms

    def combined_filter(self) -> str:
        """The filter box AND the quick filters. With quick filters the box's filter is always parenthesised, so they
        apply to all of it: `a OR b` with status FAILED is `(a OR b) AND status = FAILED`, never `a OR (b AND
        status = FAILED)` (an OR can hide behind a tab, a newline or a parenthesis, so its spelling is not guessed)."""
        terms = [term for _, term in self.quick_filter_terms()]
        if not self.filter:
            return " AND ".join(terms)
        if not terms or not parentheses_balance(self.filter):
            # Unbalanced, the typed filter could close the wrapping parenthesis (`a) OR (b`) and leave the quick
            # filters applying to part of it: it goes alone, and the service refuses it with its own positions.
            return self.filter
        return " AND ".join([f"({self.filter})", *terms])

    def request(self) -> runs_pb2.ListRunsRequest:
        return runs_pb2.ListRunsRequest(
            filter=self.combined_filter(),
            order_by=self.order,
            page_size=self.size,
            page_token=self.page,
            view=runs_pb2.RUN_VIEW_BASIC,
        )

    @property
    def is_first_page(self) -> bool:
        return not self.page

    def params(self) -> dict[str, str]:
        """This query as URL parameters (defaults left out)."""
        out = {
            "filter": self.filter,
            "status": self.status,
            "agent": self.agent,
            "model": self.model,
            "order": self.order if self.order != DEFAULT_ORDER else "",
            "size": str(self.size) if self.size != DEFAULT_PAGE_SIZE else "",
            "page": self.page,
        }
        params = {key: value for key, value in out.items() if value}
        if self.page and self.back:
            params["back"] = ".".join(self.back)
        return params

    def url(self) -> str:
        params = self.params()
        return "/?" + urlencode(params) if params else "/"

    def first_page_url(self) -> str:
        return replace(self, page="", back=()).url()

    def next_url(self, next_token: str) -> str:
        back = (*self.back, self.page)[-MAX_BACK_PAGES:]
        return replace(self, page=next_token, back=back).url()

    def previous_url(self) -> str | None:
        if not self.page:
            return None
        if not self.back:
            return self.first_page_url()
        return replace(self, page=self.back[-1], back=self.back[:-1]).url()

    def with_quick(self, **changes: str) -> str:
        """The URL of this view with some quick filters changed, from its first page."""
        return replace(self, page="", back=(), **changes).url()  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class RunRow:
    id: str
    short_id: str
    status: str
    status_class: str
    agent: str
    model: str
    user: str
    start: str
    start_iso: str
    duration: str
    running: bool
    tokens: str
    cost: str
    # The number of tool calls (Run.tool_call_count, in the BASIC view) and the distinct tools they called.
    tool_calls: str
    tools: str
    error: str
    # 0 for a top-level run; a sub-agent run's depth, and the run that started it.
    depth: int
    parent_run_id: str


def run_row(run: run_pb2.Run) -> RunRow:
    running = fmt.is_live(run.status)
    error = f"{run.error.reason}: {run.error.message}" if run.HasField("error") and run.error.reason else ""
    return RunRow(
        id=run.id,
        short_id=run.id[-8:],
        status=fmt.status_name(run.status),
        status_class=fmt.status_class(run.status),
        agent=run.agent_name,
        model=run.model_name,
        user=run.user,
        start=fmt.optional_timestamp(run, "start_time"),
        start_iso=fmt.iso(run.start_time) if run.HasField("start_time") else "",
        duration=fmt.status_name(run.status).lower() if running else fmt.optional_duration(run, "duration"),
        running=running,
        tokens=fmt.count(fmt.total_tokens(run.token_usage)),
        cost=fmt.cost(run.cost) if run.HasField("cost") else fmt.NONE,
        tool_calls=fmt.count(run.tool_call_count),
        tools=", ".join(run.tools_used),
        error=error,
        depth=run.depth,
        parent_run_id=run.parent_run_id,
    )


def parentheses_balance(text: str) -> bool:
    """Whether every ')' of a filter outside its quoted strings closes a '(' and every '(' is closed."""
    depth = 0
    quote_char = ""
    escaped = False
    for char in text:
        if quote_char:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote_char:
                quote_char = ""
        elif char in "\"'":
            quote_char = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
