"""What the console's pages show in Chromium when the data is unusual: long names, custom ranges, a RUNNING record
that no ExecutionService runs."""

from __future__ import annotations

from typing import Any

from agentrun_core.domain import RunStatus
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


def test_the_range_menu_says_custom_days_for_a_custom_range_and_a_preset_can_be_chosen_from_it(
    alice: Any, web: WebStack
) -> None:
    page = alice.new_page()
    page.goto(f"{web.url}/stats?from=2026-12-01&to=2026-12-07")
    menu = page.locator('select[name="range"]')
    assert menu.input_value() == "custom"
    assert menu.evaluate("s => s.options[s.selectedIndex].text") == "custom days"
    assert page.locator('input[name="from"]').input_value() == "2026-12-01"
    with page.expect_navigation():
        menu.select_option("24h")
    assert "range=24h" in page.url and "2026-12-01" not in page.url, page.url
    assert page.locator('select[name="range"]').input_value() == "24h"
    assert "2026-12-01" not in page.locator("#stats-range").inner_text()  # the last 24 hours, not the days
    assert page.locator('input[name="from"]').input_value() == ""
    # Changing a day turns the menu to custom days (Apply then asks for those days).
    page.fill('input[name="from"]', "2026-11-20")
    page.locator('input[name="from"]').dispatch_event("change")
    assert page.locator('select[name="range"]').input_value() == "custom"
    page.close()


def test_a_running_record_that_no_execution_service_runs_offers_no_cancel_and_no_link_to_itself(
    alice: Any, web: WebStack
) -> None:
    orphan = run_to_pb(make_run(user="alice", agent="orphan", status=RunStatus.RUNNING, model_calls=2, tool_calls=1))
    web.record(orphan)
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{orphan.id}")
    page.wait_for_function("() => document.getElementById('live-bar').classList.contains('ended')")
    state = page.locator("#live-state")
    assert "not live on ExecutionService" in state.inner_text()
    assert "still says RUNNING" in state.inner_text(), state.inner_text()
    assert page.locator(".cancel-form").count() == 0  # no Cancel that could only answer 409
    assert page.locator("#live-state a").count() == 0, state.inner_html()  # nothing but this very page to show
    page.close()
