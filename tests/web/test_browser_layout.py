"""What the console's pages look like in Chromium when the data is unusual: long names, custom ranges."""

from __future__ import annotations

from typing import Any

from agentrun_core.proto_convert import run_to_pb
from tests.support.run_factory import make_run
from tests.web.support import WebStack

# One word of 212 characters (RunsService accepts it as an agent name).
LONG_AGENT = "a-very-long-agent-name-" + "x" * 189


def overflows(page: Any) -> tuple[int, int]:
    """(the document's scroll width, the window's width)."""
    return page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


def test_a_long_agent_name_stays_inside_the_window_on_the_runs_list_and_the_run_page(alice: Any, web: WebStack) -> None:
    run = run_to_pb(make_run(user="alice", agent=LONG_AGENT, model_calls=2, tool_calls=1))
    web.record(run)
    page = alice.new_page()
    page.goto(f"{web.url}/?agent={LONG_AGENT}")
    row = page.locator(f'#run-rows tr[data-run-id="{run.id}"]')
    assert row.count() == 1
    scroll_width, window_width = overflows(page)
    assert scroll_width <= window_width, f"the runs list is {scroll_width} px wide in a {window_width} px window"
    header = page.locator("#runs-table thead th").all_inner_texts()
    agent_cell = row.locator("td").nth(header.index("agent"))
    assert agent_cell.get_attribute("title") == LONG_AGENT  # the whole name, on hover
    assert page.locator("#runs-table thead th").last.is_visible()
    page.goto(f"{web.url}/runs/{run.id}")
    scroll_width, window_width = overflows(page)
    assert scroll_width <= window_width, f"the run page is {scroll_width} px wide in a {window_width} px window"
    title = page.locator(".run-head h1").bounding_box()
    assert title is not None and title["x"] + title["width"] <= window_width
    page.close()
