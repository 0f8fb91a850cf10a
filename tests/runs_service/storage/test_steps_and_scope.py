from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs_service.errors import InvalidArgument, InvalidPageToken, RunNotFound
from runs_service.queries import GroupBy, ListRunsQuery, Scope, StatsQuery
from runs_service.storage.repository import RunRepository
from tests.support.run_factory import make_run

EVERYONE = Scope.everything()
ALICE, BOB = Scope(user="alice"), Scope(user="bob")


async def test_list_steps_pages(repo: RunRepository) -> None:
    run = make_run()
    await repo.record_run(run)
    everything = await repo.list_steps(run.id, 0, "", EVERYONE)
    assert everything.steps == list(run.execution_steps) and everything.next_page_token == ""

    pages, token = [], ""
    while True:
        page = await repo.list_steps(run.id, 15, token, ALICE)
        pages.append([s.sequence for s in page.steps])
        token = page.next_page_token
        if not token:
            break
    assert [len(p) for p in pages] == [15, 15, 10]
    assert [n for p in pages for n in p] == list(range(1, 41))


async def test_list_steps_errors(repo: RunRepository) -> None:
    run, other = make_run(), make_run()
    await repo.record_run(run)
    await repo.record_run(other)
    token = (await repo.list_steps(run.id, 10, "", EVERYONE)).next_page_token
    with pytest.raises(InvalidPageToken, match="different run or caller"):
        await repo.list_steps(other.id, 10, token, EVERYONE)
    with pytest.raises(InvalidPageToken, match="different run or caller"):
        await repo.list_steps(run.id, 10, token, ALICE)
    with pytest.raises(RunNotFound):
        await repo.list_steps("01900000-0000-7000-8000-000000000000", 10, "", EVERYONE)
    with pytest.raises(InvalidArgument) as info:
        await repo.list_steps(run.id, -5, "", EVERYONE)
    assert info.value.field == "page_size"


async def test_users_see_only_their_runs(repo: RunRepository) -> None:
    start = datetime(2026, 4, 1, tzinfo=UTC)
    alices = make_run(user="alice", start_time=start)
    bobs = make_run(user="bob", start_time=start + timedelta(minutes=1))
    await repo.record_run(alices)
    await repo.record_run(bobs)

    assert await repo.get_run(bobs.id, full=True, scope=ALICE) is None
    assert await repo.get_run(bobs.id, full=False, scope=ALICE) is None
    assert (await repo.get_run(bobs.id, full=False, scope=BOB)) == bobs.basic()
    assert (await repo.get_run(bobs.id, full=False, scope=EVERYONE)) == bobs.basic()

    assert [r.id for r in (await repo.list_runs(ListRunsQuery(), ALICE)).runs] == [alices.id]
    assert [r.id for r in (await repo.list_runs(ListRunsQuery(filter='user = "bob"'), ALICE)).runs] == []
    with pytest.raises(RunNotFound):
        await repo.list_steps(bobs.id, 0, "", ALICE)

    window = StatsQuery(start, start + timedelta(days=1), GroupBy.USER)
    assert [r.key for r in await repo.run_stats(window, ALICE)] == ["alice"]
    assert [r.key for r in await repo.run_stats(window, EVERYONE)] == ["alice", "bob"]
    bob_tools = await repo.tool_stats(window.start_time, window.end_time, "", BOB)
    assert sum(r.call_count for r in bob_tools) == 15


async def test_ping(repo: RunRepository) -> None:
    await repo.ping()
