from __future__ import annotations

import base64
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from agentrun_core.domain import Cost, Run, RunStatus
from runs_service.errors import InvalidArgument, InvalidPageToken
from runs_service.queries import ListRunsQuery, Scope
from runs_service.storage.repository import RunRepository
from tests.support.run_factory import make_run

EVERYONE = Scope.everything()
T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)


def _run(i: int, *, start: datetime, duration_s: float | None, tokens: int, cost: str | None, user: str) -> Run:
    status = RunStatus.RUNNING if duration_s is None else RunStatus.COMPLETED
    base = make_run(model_calls=1, tool_calls=0, status=status, start_time=start, user=user, seed=i)
    return dataclasses.replace(
        base,
        duration=None if duration_s is None else timedelta(seconds=duration_s),
        end_time=None if duration_s is None else start + timedelta(seconds=duration_s),
        token_usage=dataclasses.replace(base.token_usage, total_tokens=tokens),
        cost=None if cost is None else Cost(Decimal(cost)),
        agent_name="clock" if i % 2 else "search",
    )


@pytest.fixture
async def dataset(repo: RunRepository) -> list[Run]:
    """13 runs with ties on every sort field and NULL durations / costs."""
    specs: list[tuple[int, float | None, int, str | None]] = [
        # (start offset s, duration s, total tokens, cost)
        (0, 5.0, 100, "0.5"),
        (0, 5.0, 100, "0.5"),  # same start as the previous one: the id breaks the tie
        (10, None, 300, None),
        (20, 1.5, 300, "0.001"),
        (30, None, 50, None),
        (40, 9.25, 0, "0"),
        (50, 1.5, 700, "0.001"),
        (60, 0.0, 700, None),
        (60, 2.0, 10, "12.25"),
        (70, None, 10, "0.3"),
        (80, 3.0, 999, "0.0000000001"),
        (90, 5.0, 100, None),
        (100, 4.0, 42, "7"),
    ]
    runs = [
        _run(i, start=T0 + timedelta(seconds=s), duration_s=d, tokens=t, cost=c, user="alice" if i % 3 else "bob")
        for i, (s, d, t, c) in enumerate(specs)
    ]
    for run in runs:
        await repo.record_run(run)
    return runs


def _sort_value(run: Run, field: str) -> Any:
    match field:
        case "start_time":
            return run.start_time
        case "duration":
            return -1 if run.duration is None else run.duration // timedelta(microseconds=1)
        case "total_tokens":
            return run.token_usage.total_tokens
        case "cost":
            return Decimal(-1) if run.cost is None else run.cost.amount
    raise AssertionError(field)


async def _all_pages(repo: RunRepository, query: ListRunsQuery, scope: Scope = EVERYONE) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        page = await repo.list_runs(dataclasses.replace(query, page_token=token), scope)
        pages.append([r.id for r in page.runs])
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) < 50, "pagination does not end"


@pytest.mark.parametrize("field", ["start_time", "duration", "total_tokens", "cost"])
async def test_order_and_pagination(repo: RunRepository, dataset: list[Run], field: str) -> None:
    for direction in ("asc", "desc", "", "DESC"):
        descending = direction.lower() != "asc"
        expected = [r.id for r in sorted(dataset, key=lambda r: (_sort_value(r, field), r.id), reverse=descending)]
        pages = await _all_pages(repo, ListRunsQuery(order_by=f"{field} {direction}".strip(), page_size=3))
        assert [len(p) for p in pages] == [3, 3, 3, 3, 1], direction
        assert [run_id for page in pages for run_id in page] == expected, direction


async def test_default_order_is_start_time_desc_and_last_page_has_no_token(
    repo: RunRepository, dataset: list[Run]
) -> None:
    page = await repo.list_runs(ListRunsQuery(), EVERYONE)
    expected = [r.id for r in sorted(dataset, key=lambda r: (r.start_time, r.id), reverse=True)]
    assert [r.id for r in page.runs] == expected
    assert page.next_page_token == ""
    exact = await repo.list_runs(ListRunsQuery(page_size=13), EVERYONE)
    assert len(exact.runs) == 13 and exact.next_page_token == ""


async def test_full_view_includes_steps(repo: RunRepository, dataset: list[Run]) -> None:
    page = await repo.list_runs(ListRunsQuery(page_size=4, full=True), EVERYONE)
    by_id = {r.id: r for r in dataset}
    assert page.runs == [by_id[r.id] for r in page.runs]
    basic = await repo.list_runs(ListRunsQuery(page_size=4), EVERYONE)
    assert basic.runs == [by_id[r.id].basic() for r in basic.runs]


async def test_filter_and_scope(repo: RunRepository, dataset: list[Run]) -> None:
    pages = await _all_pages(repo, ListRunsQuery(filter='agent_name = "clock"', page_size=2))
    assert sorted(i for p in pages for i in p) == sorted(r.id for r in dataset if r.agent_name == "clock")
    bob = await _all_pages(repo, ListRunsQuery(page_size=2), Scope(user="bob"))
    assert sorted(i for p in bob for i in p) == sorted(r.id for r in dataset if r.user == "bob")
    nobody = await repo.list_runs(ListRunsQuery(), Scope(user="mallory"))
    assert nobody.runs == [] and nobody.next_page_token == ""


async def test_token_bound_to_filter_order_and_user(repo: RunRepository, dataset: list[Run]) -> None:
    first = await repo.list_runs(ListRunsQuery(filter="status = COMPLETED", page_size=2), EVERYONE)
    token = first.next_page_token
    assert token
    # The same request continues, also when the filter is only spelled differently.
    await repo.list_runs(ListRunsQuery(filter="status=COMPLETED", page_size=2, page_token=token), EVERYONE)
    await repo.list_runs(ListRunsQuery(filter="status = COMPLETED", page_size=2, page_token=token), EVERYONE)
    for query, scope in [
        (ListRunsQuery(filter="status = RUNNING", page_size=2, page_token=token), EVERYONE),
        (ListRunsQuery(page_size=2, page_token=token), EVERYONE),
        (ListRunsQuery(filter="status = COMPLETED", order_by="cost", page_size=2, page_token=token), EVERYONE),
        (ListRunsQuery(filter="status = COMPLETED", page_size=2, page_token=token), Scope(user="alice")),
    ]:
        with pytest.raises(InvalidPageToken, match="different filter, order_by or caller") as info:
            await repo.list_runs(query, scope)
        assert info.value.field == "page_token"


async def test_tampered_and_garbage_tokens(repo: RunRepository, dataset: list[Run]) -> None:
    token = (await repo.list_runs(ListRunsQuery(page_size=2), EVERYONE)).next_page_token
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[10] ^= 0x01
    tampered = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    for bad in (tampered, "not-a-token", "", token[:-2], "eyJ9"):
        if not bad:
            continue
        with pytest.raises(InvalidPageToken):
            await repo.list_runs(ListRunsQuery(page_size=2, page_token=bad), EVERYONE)
    other_secret = RunRepository(repo.engine, b"another-secret-another-secret!!")
    with pytest.raises(InvalidPageToken, match="not issued by this service or was altered"):
        await other_secret.list_runs(ListRunsQuery(page_size=2, page_token=token), EVERYONE)


@pytest.mark.parametrize(
    ("order_by", "problem"),
    [("name", "unknown field 'name'"), ("cost sideways", "asc or desc"), ("cost asc extra", "one field")],
)
async def test_bad_order_by(repo: RunRepository, order_by: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem) as info:
        await repo.list_runs(ListRunsQuery(order_by=order_by), EVERYONE)
    assert info.value.field == "order_by"


async def test_negative_page_size(repo: RunRepository) -> None:
    with pytest.raises(InvalidArgument) as info:
        await repo.list_runs(ListRunsQuery(page_size=-1), EVERYONE)
    assert info.value.field == "page_size"
