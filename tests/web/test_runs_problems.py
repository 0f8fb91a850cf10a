"""What the runs page says about a query it cannot use, over HTTP: the service's message about the filter the person
typed, positions counted in what they typed (quick filters are ANDed behind their back), and every valid part of the
query kept in the form when one value in the URL is bad."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.support.auth import ALICE
from tests.web.support import WebStack
from tests.web.test_http import signed_in

_PROBLEM = re.compile(r'<p class="error" [^>]*id="(filter-problem|query-problem)"[^>]*>([^<]*)</p>')


@pytest.fixture
def alice_client(web: WebStack) -> Iterator[httpx.Client]:
    with signed_in(web, ALICE) as client:
        yield client


def problem_of(page: httpx.Response) -> tuple[str, str]:
    """(the id of the element that shows the problem, its text)."""
    match = _PROBLEM.search(page.text)
    assert match is not None, page.text[:2000]
    return match.group(1), html.unescape(match.group(2))


def test_a_bad_typed_filter_is_reported_against_what_was_typed_with_or_without_quick_filters(
    alice_client: httpx.Client,
) -> None:
    alone = alice_client.get("/", params={"filter": "status ="})
    assert alone.status_code == 400
    assert problem_of(alone) == (
        "filter-problem",
        "filter: expected a value after status =, got end of input (at position 8)",
    )
    with_quick = alice_client.get("/", params={"filter": "status =", "agent": "agent-1", "status": "FAILED"})
    assert with_quick.status_code == 400
    assert problem_of(with_quick) == problem_of(alone)


def test_a_bad_quick_filter_names_its_box_and_no_position_in_a_filter_nobody_typed(alice_client: httpx.Client) -> None:
    page = alice_client.get("/", params={"filter": 'model_name = "m"', "agent": "bad\x00name"})
    assert page.status_code == 400
    where, message = problem_of(page)
    assert where == "query-problem" and message.startswith("agent: ") and "U+0000" in message, message
    assert "position" not in message


def test_one_bad_value_in_the_url_keeps_the_rest_of_the_query_in_the_form(alice_client: httpx.Client) -> None:
    params = {"filter": 'model_name = "m"', "agent": "quick", "order": "duration desc", "status": "FAILD"}
    page = alice_client.get("/", params=params)
    assert page.status_code == 400
    assert problem_of(page)[1].startswith("unknown status 'FAILD'")
    assert '<input id="filter" name="filter" value="model_name = &#34;m&#34;"' in page.text, page.text[:3000]
    assert re.search(r'<input name="agent" value="quick"', page.text)
    assert '<option value="duration desc" selected>' in page.text
    assert re.search(r'<select name="status" aria-invalid="true"', page.text)
    bad_size = alice_client.get("/", params={**params, "status": "FAILED", "size": "lots"})
    assert bad_size.status_code == 400 and problem_of(bad_size)[1].startswith("page size must be")
    assert '<option value="FAILED" selected>' in bad_size.text and 'value="quick"' in bad_size.text
