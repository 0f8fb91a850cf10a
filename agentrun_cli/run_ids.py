"""Run ids as a person types them: a whole id, or any unique prefix or suffix of one, such as the shortened ids
`agentrun runs list` prints (`…2e3f4a5b`, the ellipsis optional).

A part is resolved with ListRuns filters (`id = "PART*"` and `id = "*PART"`), which RunsService answers from its
indexes (a range of the primary key; the index on the ids' last 8 characters), so it stays cheap at a million runs.
Only runs the caller may see are candidates. A whole id is used as is, without asking RunsService.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_cli.client import RunsClient
from agentrun_cli.errors import EXIT_USAGE, CliError
from agentrun_cli.render import format as fmt

ID_LENGTH = 36
_HYPHENS = frozenset({8, 13, 18, 23})
_HEX = frozenset("0123456789abcdef")
_WHOLE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_ELLIPSES = ("…", "...")
# How many candidates an ambiguous part lists.
MAX_CANDIDATES = 10


def typed_id(text: str) -> str:
    """What the user typed, as an id or a part of one: trimmed, lower case, without the ellipsis `runs list` adds."""
    typed = text.strip().lower()
    for ellipsis in _ELLIPSES:
        typed = typed.removeprefix(ellipsis).removesuffix(ellipsis)
    return typed


def _fits_at(part: str, offset: int) -> bool:
    """Whether `part` could be the characters of a run id starting at `offset`."""
    return all((char == "-") if index in _HYPHENS else (char in _HEX) for index, char in enumerate(part, start=offset))


def could_be_prefix(part: str) -> bool:
    return 0 < len(part) <= ID_LENGTH and _fits_at(part, 0)


def could_be_suffix(part: str) -> bool:
    return 0 < len(part) <= ID_LENGTH and _fits_at(part, ID_LENGTH - len(part))


class AmbiguousRunId(CliError):
    """A part of an id that more than one run's id starts or ends with; `details` lists the candidates."""

    def __init__(self, part: str, candidates: Sequence[run_pb2.Run], more: bool) -> None:
        count = f"more than {len(candidates)}" if more else str(len(candidates))
        super().__init__(
            f"{part!r} is ambiguous: the ids of {count} runs start or end with it; give more characters of the id",
            EXIT_USAGE,
        )
        self.details = [
            f"{run.id}  {run.agent_name}  {fmt.status_name(run.status)}  {fmt.optional_timestamp(run, 'start_time')}"
            for run in candidates
        ]


def resolve_run_id(client: RunsClient, text: str) -> str:
    """The whole id `text` names: itself when it is one, else the one run whose id starts or ends with it.
    CliError (exit 2) when it is not part of an id, matches no run, or matches several (AmbiguousRunId)."""
    part = typed_id(text)
    if _WHOLE.fullmatch(part):
        return part
    filters = [
        *([f'id = "{part}*"'] if could_be_prefix(part) else []),
        *([f'id = "*{part}"'] if could_be_suffix(part) else []),
    ]
    if not filters:
        raise CliError(
            f"{text.strip()[:80]!r} is not a run id nor part of one: ids are lower-case hexadecimal digits and hyphens "
            "(0190b6e2-7c3a-7d4e-9f10-2a3b4c5d6e7f); `agentrun runs list` shows them",
            EXIT_USAGE,
        )
    found: dict[str, run_pb2.Run] = {}
    more = False
    for expression in filters:
        reply = client.list_runs(
            runs_pb2.ListRunsRequest(filter=expression, page_size=MAX_CANDIDATES + 1, view=runs_pb2.RUN_VIEW_BASIC)
        )
        more = more or len(reply.runs) > MAX_CANDIDATES or bool(reply.next_page_token)
        for run in reply.runs[:MAX_CANDIDATES]:
            found.setdefault(run.id, run)
    if len(found) == 1 and not more:
        return next(iter(found))
    if not found:
        raise CliError(
            f"no run id starts or ends with {part!r} (among the runs you may see); `agentrun runs list` shows the "
            "latest ones",
            EXIT_USAGE,
        )
    candidates = sorted(found.values(), key=lambda run: run.start_time.ToNanoseconds(), reverse=True)
    raise AmbiguousRunId(part, candidates[:MAX_CANDIDATES], more or len(candidates) > MAX_CANDIDATES)
