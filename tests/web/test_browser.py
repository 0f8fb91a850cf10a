"""The web console in a real Chromium, against the real services: what a person sees.

One browser for the session, one signed-in context for alice; bob's runs are made through the API with his token.
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_core.domain import RunStatus
from agentrun_core.proto_convert import run_to_pb
from agentrun_web.settings import WebAuth, WebSettings
from tests.security.support import status_of
from tests.support.auth import ALICE, BOB
from tests.support.model_gate import Gate
from tests.support.run_factory import make_run
from tests.support.stack import free_port
from tests.web.conftest import sign_in
from tests.web.proxy import DroppingProxy
from tests.web.support import WebStack, console_only, sign_in_at, web_stack

pytestmark = pytest.mark.browser

TOKEN_FIELDS = (
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "thinking_tokens",
    "tool_use_prompt_tokens",
    "total_tokens",
)
_RUN_URL = re.compile(r".*/runs/([0-9a-f-]{36})$")


def seconds(duration: Any) -> float:
    return duration.seconds + duration.nanos / 1e9


def epoch_s(stamp: Any) -> float:
    return stamp.seconds + stamp.nanos / 1e9


def card_value(page: Any, field: str) -> int:
    text = page.locator(f'#token-cards .card[data-field="{field}"] .card-value').inner_text()
    return int(text.replace(",", ""))


def box(page: Any, selector: str) -> dict[str, float]:
    found = page.locator(selector).bounding_box()
    assert found is not None, f"{selector} is not visible"
    return found


def mark_document(page: Any) -> None:
    """A marker that survives only as long as this document: a reload or navigation loses it."""
    page.evaluate("window.__sameDocument = true")


def same_document(page: Any) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def test_run_page_shows_the_runs_tokens_and_a_waterfall_of_every_call(
    alice: Any, web: WebStack, screenshots: Path
) -> None:
    run = web.execute(ALICE, "scripted", "waterfall: what time is it?")
    assert run.status == run_pb2.RUN_STATUS_COMPLETED
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{run.id}")

    # Token cards: exactly GetRun's numbers; the cost with its price table.
    for field in TOKEN_FIELDS[:-1]:
        assert card_value(page, field) == getattr(run.token_usage, field), field
    assert card_value(page, "total_tokens") == run.token_usage.total_tokens
    assert page.locator("#cost-value").inner_text() == f"{run.cost.amount} {run.cost.currency_code}"
    assert run.cost.price_table_version in page.locator("#price-table").inner_text()
    assert page.locator("#status-badge").inner_text() == "COMPLETED"
    assert page.locator("#final-response pre").inner_text() == run.final_response

    # One bar per model call and per tool call, each with its stored duration, drawn to scale.
    model_steps = [s for s in run.execution_steps if s.WhichOneof("payload") == "model_call"]
    assert page.locator("#wf-rows .wf-row.wf-model").count() == len(model_steps) == 3
    assert page.locator("#wf-rows .wf-row.wf-tool").count() == len(run.tool_calls) == 5
    span = float(page.locator("#waterfall").get_attribute("data-span-s"))
    expected = {f"#bar-model-{s.sequence}": seconds(s.duration) for s in model_steps}
    expected |= {f"#bar-tool-{c.id}": seconds(c.duration) for c in run.tool_calls}
    for row, duration in expected.items():
        assert float(page.locator(row).get_attribute("data-duration-s")) == pytest.approx(duration, abs=1e-6), row
        track = box(page, f"{row} .wf-track")
        bar = box(page, f"{row} .wf-bar")
        assert bar["width"] == pytest.approx(max(2.0, duration / span * track["width"]), abs=1.5), row
    # Time to first token is marked inside each model call's bar.
    for step in model_steps:
        ttft = seconds(step.model_call.time_to_first_token)
        bar, mark = box(page, f"#bar-model-{step.sequence} .wf-bar"), box(page, f"#bar-model-{step.sequence} .wf-ttft")
        assert mark["x"] - bar["x"] == pytest.approx(ttft / seconds(step.duration) * bar["width"], abs=2.0)
    # The two calls of the first turn ran in parallel: side by side on their own lanes, overlapping in time.
    echo, sleep = box(page, "#bar-tool-c1 .wf-bar"), box(page, "#bar-tool-c2 .wf-bar")
    assert echo["y"] != sleep["y"]
    assert echo["x"] < sleep["x"] + sleep["width"] and sleep["x"] < echo["x"] + echo["width"]
    # A failed call looks different from one that succeeded, and says so.
    failed, ok = page.locator("#bar-tool-c3"), page.locator("#bar-tool-c1")
    assert failed.get_attribute("data-state") == "failed" and "failed" in failed.locator(".wf-note").inner_text()
    style = "el => getComputedStyle(el).backgroundImage + getComputedStyle(el).backgroundColor"
    assert failed.locator(".wf-bar").evaluate(style) != ok.locator(".wf-bar").evaluate(style)

    # Selecting a bar shows its details; redaction and truncation markers are shown as what they are.
    page.click("#bar-tool-c4 .wf-bar")
    pane = page.locator("#pane-body")
    pane.locator("mark.redacted").first.wait_for()
    assert "hunter2" not in pane.inner_text()
    assert "removed by the execution service" in pane.locator(".note-redacted").inner_text()
    page.click("#bar-tool-c5 .wf-bar")
    pane.locator(".note-truncated").wait_for()
    assert "5,000 bytes" in pane.locator(".note-truncated").inner_text()
    assert pane.locator("mark.truncated").count() == 1
    page.click(f"#bar-model-{model_steps[0].sequence} .wf-bar")
    pane.locator(".finish-reason").wait_for()
    assert pane.locator(".finish-reason").inner_text() == "STOP"
    assert pane.locator("pre.text").inner_text() == model_steps[0].model_call.text
    usage_cells = pane.locator("table.usage tbody td").all_inner_texts()
    assert usage_cells[0] == f"{model_steps[0].model_call.usage.input_tokens:,}"
    page.click("#bar-tool-c3 .wf-bar")
    pane.locator("pre.error-text").wait_for()
    assert "boom" in pane.locator("pre.error-text").inner_text()
    assert page.url.endswith("?step=7")  # the selection is in the URL, so it can be shared
    page.screenshot(path=str(screenshots / "run-details.png"), full_page=True)
    page.close()


def test_live_run_started_from_the_start_page_shows_each_step_within_a_second(
    alice: Any, web: WebStack, screenshots: Path
) -> None:
    page = alice.new_page()
    page.goto(f"{web.url}/start?agent=withvars")
    assert page.locator('input[name="var.city"]').get_attribute("required") is not None
    assert page.locator('input[name="var.days"]').get_attribute("required") is None
    broken = page.locator("#broken-agents")
    assert "broken.prompt" in broken.inner_text() and "max_steps" in broken.inner_text()
    page.click('a[data-agent="scripted"]')
    page.fill('textarea[name="task"]', "slow: take your time")
    page.screenshot(path=str(screenshots / "start.png"), full_page=True)
    page.click("#start-button")
    page.wait_for_url(_RUN_URL)
    mark_document(page)
    match = _RUN_URL.match(page.url)
    assert match is not None
    run_id = match.group(1)
    page.locator("#step-rows tr[data-seq='3']").wait_for()
    page.screenshot(path=str(screenshots / "live-run.png"), full_page=True)
    page.locator("#run[data-finished]").wait_for(timeout=20_000)
    assert same_document(page), "the page was reloaded"
    assert page.locator("#status-badge").inner_text() == "COMPLETED"

    stored = web.wait_stored(run_id)
    shown = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('#step-rows tr[data-seq]')]"
        ".map(tr => [tr.dataset.seq, Number(tr.dataset.shownAt)]))"
    )
    assert sorted(int(seq) for seq in shown) == [step.sequence for step in stored.execution_steps]
    for step in stored.execution_steps:
        # A model call is streamed when it ends; the other steps when they happen.
        happened = epoch_s(step.time) + (seconds(step.duration) if step.WhichOneof("payload") == "model_call" else 0)
        lag = shown[str(step.sequence)] / 1000 - happened
        assert -0.05 <= lag <= 1.0, (step.sequence, step.WhichOneof("payload"), lag)
    for field in TOKEN_FIELDS:
        assert card_value(page, field) == getattr(stored.token_usage, field), field
    assert page.locator("#wf-rows .wf-row").count() == len(stored.tool_calls) + stored.steps_taken
    page.close()


def test_a_live_runs_sub_agent_table_follows_its_children_without_a_reload(alice: Any, web: WebStack) -> None:
    """The lead hands a two-second task to a sub-agent, then works on: the page opened at the start shows the child
    run, and its end, without a reload (the table was drawn once, at load)."""
    run_id = web.start(ALICE, "lead", "delegate: hand it on")
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{run_id}")
    mark_document(page)
    page.locator("#run[data-finished]").wait_for(timeout=30_000)
    stored = web.wait_stored(run_id)
    [child_run_id] = [
        step.tool_call.child_run_id
        for step in stored.execution_steps
        if step.WhichOneof("payload") == "tool_call" and step.tool_call.child_run_id
    ]
    child = page.locator(f"#descendants tr[data-run-id='{child_run_id}']")
    child.locator(".badge", has_text="COMPLETED").wait_for(timeout=10_000)
    assert same_document(page), "the page was reloaded"
    assert page.locator("#descendants tr[data-run-id]").count() == 1
    page.close()


def test_a_step_named_in_the_url_of_a_live_run_opens_when_it_comes(alice: Any, web: WebStack) -> None:
    """A link to step 5 of a run that has not got there yet: the page says nothing is wrong, and opens the step's
    details when it streams in."""
    run_id = web.start(ALICE, "scripted", "slow: a link shared early")
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{run_id}?step=5")
    assert page.locator("#no-such-step").count() == 0
    page.locator('#pane-body .detail[data-seq="5"]').wait_for(timeout=20_000)
    assert "step 5" in page.locator('#pane-body .detail[data-seq="5"] h3').inner_text()
    assert page.locator(".wf-row.selected").count() == 1
    page.close()


def test_cancel_ends_the_run_cancelled(alice: Any, web: WebStack) -> None:
    run_id = web.start(ALICE, "scripted", "cancel: wait for me")
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{run_id}")
    mark_document(page)
    page.locator("#bar-tool-w1.st-running").wait_for()
    page.click("#cancel-now")
    page.locator("#run[data-finished]").wait_for(timeout=15_000)
    assert same_document(page)
    assert page.locator("#status-badge").inner_text() == "CANCELLED"
    assert page.locator("#bar-tool-w1").get_attribute("data-state") == "cancelled"
    assert page.locator(".cancel-form").count() == 0
    assert web.wait_stored(run_id).status == run_pb2.RUN_STATUS_CANCELLED
    page.close()


def test_cancel_after_turn_lets_the_turn_finish(alice: Any, web: WebStack) -> None:
    run_id = web.start(ALICE, "scripted", "turn: stop after this turn")
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{run_id}")
    page.locator("#bar-tool-t2").wait_for()  # the first turn's tool calls are running (t2 lasts 4 s)
    page.click("#cancel-after-turn")
    page.locator("#run[data-finished]").wait_for(timeout=15_000)
    assert page.locator("#status-badge").inner_text() == "CANCELLED"
    stored = web.wait_stored(run_id)
    assert stored.status == run_pb2.RUN_STATUS_CANCELLED and stored.steps_taken == 1
    assert [call.status for call in stored.tool_calls] == [run_pb2.TOOL_CALL_STATUS_SUCCEEDED] * 2
    page.close()


def test_another_users_run_is_neither_listed_nor_reachable(alice: Any, web: WebStack) -> None:
    mine = web.execute(ALICE, "quick", "alice's own task")
    theirs = web.execute(BOB, "quick", "bob's private task")
    page = alice.new_page()
    page.goto(f"{web.url}/")
    listed = page.locator("#run-rows tr[data-run-id]").evaluate_all("rows => rows.map(r => r.dataset.runId)")
    assert mine.id in listed and theirs.id not in listed
    response = page.goto(f"{web.url}/runs/{theirs.id}")
    assert response is not None and response.status == 404
    assert page.locator("section.problem h1").inner_text() == "Not found"
    assert "bob's private task" not in page.content()
    response = page.goto(f"{web.url}/runs/{theirs.id}/steps/1")
    assert response is not None and response.status == 404
    page.close()


def test_bad_filter_shows_the_services_message_next_to_the_box(alice: Any, web: WebStack) -> None:
    bad = "total_tokens > lots"
    request = rs.ListRunsRequest(filter=bad)
    code, details = web.call(lambda: status_of(lambda: web.stack.runs_stub(ALICE).ListRuns(request)))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    page = alice.new_page()
    page.goto(f"{web.url}/")
    page.fill("#filter", bad)
    page.click("#runs-query button[type='submit']")
    problem = page.locator(".filter-box #filter-problem")
    problem.wait_for()
    assert problem.inner_text() == details
    assert page.locator("#filter").get_attribute("aria-invalid") == "true"
    assert "filter=total_tokens" in page.url  # the view, bad filter included, is in the URL
    page.close()


def test_runs_that_start_or_end_appear_without_a_reload(alice: Any, web: WebStack, screenshots: Path) -> None:
    page = alice.new_page()
    page.goto(f"{web.url}/?agent=scripted")
    mark_document(page)
    run_id = web.start(ALICE, "scripted", "slow: appear in the list")
    row = page.locator(f'#run-rows tr[data-run-id="{run_id}"]')
    row.wait_for(timeout=5_000)
    assert row.get_attribute("data-status") == "RUNNING"
    page.screenshot(path=str(screenshots / "runs.png"), full_page=True)
    page.locator(f'#run-rows tr[data-run-id="{run_id}"][data-status="COMPLETED"]').wait_for(timeout=15_000)
    assert same_document(page)
    assert "agent=scripted" in page.url
    page.close()


def test_dropped_event_stream_resumes_without_duplicates(alice: Any, web: WebStack) -> None:
    proxy = DroppingProxy(web.loop, web.console.port)
    try:
        run_id = web.start(ALICE, "scripted", "slow: survive a dropped connection")
        page = alice.new_page()
        page.goto(f"{proxy.url}/runs/{run_id}")
        mark_document(page)
        page.locator("#step-rows tr[data-seq='1']").wait_for()
        proxy.drop_all()
        page.locator("#live-bar.lost").wait_for(timeout=5_000)  # the page says it lost the stream
        page.locator("#run[data-finished]").wait_for(timeout=20_000)
        assert same_document(page)
        stored = web.wait_stored(run_id)
        sequences = page.locator("#step-rows tr[data-seq]").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
        assert sequences == [step.sequence for step in stored.execution_steps]
        assert page.locator("#run").get_attribute("data-duplicates") == "0"
        # The tabs' shared stream asked again from the step after the last one it had.
        asked = [re.search(rf"watch={run_id}%3A(\d+)", head) for head in proxy.requests if "GET /live?" in head]
        starts = [int(found.group(1)) for found in asked if found]
        assert len(starts) >= 2 and starts[0] < starts[-1], proxy.requests
        assert page.locator("#status-badge").inner_text() == "COMPLETED"
        page.close()
    finally:
        proxy.close()


def test_stats_page_charts_what_the_api_counts(alice: Any, web: WebStack, screenshots: Path) -> None:
    web.execute(ALICE, "quick", "count me")
    page = alice.new_page()
    page.goto(f"{web.url}/stats")
    assert page.locator("figure.chart").count() == 5
    assert page.locator("figure.chart[data-chart='runs'] .column").count() == 31  # every day of the last 30 days
    runs_by_agent = {
        row.locator("td").first.inner_text(): int(row.locator("td").nth(1).inner_text().replace(",", ""))
        for row in page.locator("#stats-agent tbody tr[data-key]").all()
    }
    listed = web.list_runs(ALICE).runs
    assert runs_by_agent["quick"] == sum(1 for run in listed if run.agent_name == "quick")
    assert page.locator("#stats-tools tr[data-key='echo']").count() == 1
    page.screenshot(path=str(screenshots / "stats.png"), full_page=True)

    # Accessible charts: each says what it shows, and has a table of every value a column shows.
    for chart in page.locator("figure.chart").all():
        title = chart.get_attribute("data-chart") or ""
        columns = chart.locator(".columns")
        assert columns.get_attribute("role") == "img" and title in (columns.get_attribute("aria-label") or "")
        shown = chart.locator(".column").evaluate_all("cols => cols.map(c => c.title)")
        rows = chart.locator("table tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))"
        )
        assert len(rows) == len(shown) == 31, title
        assert all(cells[1] in text for cells, text in zip(rows, shown, strict=True)), title
    # A custom range of whole days, with day labels a whole number of days apart under each chart.
    page.fill("input[name='from']", "2026-11-01")
    page.fill("input[name='to']", "2026-11-20")
    page.click("#stats-query button[type='submit']")
    page.wait_for_url("**/stats?**from=2026-11-01**")
    runs_chart = page.locator("figure.chart[data-chart='runs']")
    assert runs_chart.locator(".column").count() == 20
    assert runs_chart.locator(".axis .tick").all_inner_texts() == ["11-01", "11-08", "11-15"]
    page.close()


def test_a_run_of_500_steps_stays_usable(alice: Any, web: WebStack) -> None:
    """The page and the pane read the steps page by page (ListRunSteps); the pane shows a call's steps in sequence
    order, an error step's message, and says so when a step's details cannot be loaded."""
    big = run_to_pb(make_run(user="alice", agent="big-agent", model_calls=101, tool_calls=199, status=RunStatus.FAILED))
    assert len(big.execution_steps) == 500 and big.execution_steps[-1].WhichOneof("payload") == "error"
    web.record(big)
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{big.id}")
    assert page.locator("#step-rows tr").count() == 500
    shown = page.locator("#step-rows tr[data-seq]").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert shown == list(range(1, 501))
    assert page.locator("#wf-rows .wf-row").count() == 101 + 199
    # The 300 bars scroll inside the waterfall's box (no 6,000-pixel page), the time axis staying on top.
    waterfall = box(page, "#waterfall")
    assert waterfall["height"] <= 0.8 * 900
    last = page.locator("#wf-rows .wf-row.wf-tool").last
    last.scroll_into_view_if_needed()
    waterfall, axis = box(page, "#waterfall"), box(page, "#waterfall .wf-axis")
    last_bar = box(page, "#wf-rows .wf-row.wf-tool >> nth=-1")
    assert axis["y"] == pytest.approx(waterfall["y"], abs=3)
    assert axis["y"] + axis["height"] <= last_bar["y"] <= waterfall["y"] + waterfall["height"]
    assert page.locator("#waterfall .wf-tick").count() >= 2
    last.locator(".wf-bar").click()
    page.locator("#pane-body article.detail.k-tool_result").wait_for()
    in_pane = page.locator("#pane-body article.detail").evaluate_all("els => els.map(e => Number(e.dataset.seq))")
    assert in_pane == sorted(in_pane) and len(in_pane) == 2  # the call, then its result
    page.locator("#step-500 a").click()
    error = big.execution_steps[-1].error
    page.locator("#pane-body article.detail.k-error").wait_for()
    assert page.locator("#pane-body article.detail.k-error pre.error-text").inner_text() == error.message
    page.route("**/steps/**", lambda route: route.abort())  # the console cannot be reached
    page.locator("#wf-rows .wf-row.wf-tool").first.locator(".wf-bar").click()
    alert = page.locator("#pane-body [role='alert']").first
    alert.wait_for()
    assert "could not be loaded" in alert.inner_text()
    assert page.locator("#pane-body").get_attribute("aria-busy") is None
    page.close()


def test_a_link_from_another_site_opens_the_run_signed_in(alice: Any, web: WebStack) -> None:
    """The session cookie is SameSite=Strict, so a navigation from another site arrives without it: the console
    reloads the page from its own origin (the cookie is sent then) instead of asking to sign in again."""
    run = web.execute(ALICE, "quick", "linked from elsewhere")
    page = alice.new_page()
    link = f"{web.url}/runs/{run.id}"
    page.route(
        "http://elsewhere.test/",
        lambda route: route.fulfill(content_type="text/html", body=f'<a id="go" href="{link}">the run</a>'),
    )
    page.goto("http://elsewhere.test/")
    page.click("#go")
    page.wait_for_url(link)
    page.locator("#status-badge").wait_for()
    assert page.locator("#status-badge").inner_text() == "COMPLETED"
    assert "signed in" in page.locator(".who").inner_text()
    page.close()


def _with_failed_attempts(run: run_pb2.Run) -> tuple[int, int, int]:
    """Gives the run's first model call two failed attempts before its answer (retried) and makes its last one a
    call that got no answer (every attempt failed); returns the sequences (retried, failed, a clean call)."""
    calls = [step for step in run.execution_steps if step.WhichOneof("payload") == "model_call"]
    retried, clean, failed = calls[0], calls[1], calls[-1]
    for attempt, (code, status, reason) in enumerate(
        ((429, "RESOURCE_EXHAUSTED", "MODEL_RATE_LIMITED"), (503, "UNAVAILABLE", "MODEL_UNAVAILABLE")), start=1
    ):
        failed_attempt = retried.model_call.failed_attempts.add(
            attempt=attempt, code=code, status=status, reason=reason, message=f"try {attempt} refused"
        )
        failed_attempt.start_time.CopyFrom(retried.time)
        failed_attempt.duration.FromMilliseconds(20)
        failed_attempt.wait_before_next.FromMilliseconds(10)
    failed.model_call.finish_reason = ""
    failed.model_call.text = ""
    last = failed.model_call.failed_attempts.add(attempt=1, code=0, reason="MODEL_TIMEOUT", message="no answer")
    last.start_time.CopyFrom(failed.time)
    last.duration.CopyFrom(failed.duration)
    return retried.sequence, failed.sequence, clean.sequence


def test_failed_and_retried_model_calls_stand_out_and_the_header_names_the_user(alice: Any, web: WebStack) -> None:
    run = run_to_pb(make_run(user="alice", agent="flaky-agent", model_calls=3, tool_calls=2))
    retried, failed, clean = _with_failed_attempts(run)
    web.record(run)
    page = alice.new_page()
    page.goto(f"{web.url}/runs/{run.id}")
    assert page.locator("header.topbar #user-name").inner_text() == "alice"

    bar_of = {sequence: page.locator(f"#bar-model-{sequence}") for sequence in (retried, failed, clean)}
    assert bar_of[retried].get_attribute("data-state") == "retried"
    assert bar_of[retried].locator(".wf-attempt").count() == 2
    assert "retried after 2 failed attempts (429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE)" in (
        bar_of[retried].locator(".wf-note").inner_text()
    )
    assert bar_of[failed].get_attribute("data-state") == "failed"
    assert bar_of[failed].locator(".wf-note").inner_text().startswith("failed: MODEL_TIMEOUT")
    assert bar_of[clean].locator(".wf-attempt").count() == 0
    style = "el => getComputedStyle(el).backgroundImage + getComputedStyle(el).backgroundColor"
    clean_look = bar_of[clean].locator(".wf-bar").evaluate(style)
    assert bar_of[failed].locator(".wf-bar").evaluate(style) != clean_look
    assert bar_of[retried].locator(".wf-attempt").first.evaluate(style) != clean_look

    bar_of[retried].locator(".wf-bar").click()
    attempts = page.locator(f"#pane-body #attempts-{retried} tbody tr")
    attempts.first.wait_for()
    assert [row.locator("td").nth(1).inner_text() for row in attempts.all()] == [
        "429 RESOURCE_EXHAUSTED",
        "503 UNAVAILABLE",
    ]
    assert "try 2 refused" in attempts.nth(1).inner_text()
    bar_of[failed].locator(".wf-bar").click()
    page.locator(f"#pane-body #attempts-{failed}").wait_for()
    assert "every attempt failed" in page.locator("#pane-body .attempts-summary").inner_text()
    page.close()


def test_runs_page_shows_each_runs_number_of_tool_calls(alice: Any, web: WebStack) -> None:
    runs = [run_to_pb(make_run(user="alice", agent="counted", model_calls=3, tool_calls=n)) for n in (0, 4, 7)]
    for run in runs:
        web.record(run)
    listed = {run.id: run for run in web.list_runs(ALICE, 'agent_name = "counted"').runs}
    assert {run_id: run.tool_call_count for run_id, run in listed.items()} == {r.id: len(r.tool_calls) for r in runs}
    assert not any(run.tool_calls for run in listed.values())  # the BASIC view: the count without the calls
    page = alice.new_page()
    page.goto(f"{web.url}/?agent=counted")
    header = page.locator("#runs-table thead th").all_inner_texts()
    column = header.index("tool calls")
    shown = {
        row.get_attribute("data-run-id"): row.locator("td").nth(column).inner_text()
        for row in page.locator("#run-rows tr[data-run-id]").all()
    }
    assert shown == {run.id: str(len(run.tool_calls)) for run in runs}
    page.close()


def test_seven_live_tabs_share_one_connection_and_leave_room_for_other_pages(alice: Any, web: WebStack) -> None:
    """Browsers open at most six HTTP/1.1 connections per host: seven live run pages with a stream each would hold
    them all and every other page would wait. The tabs share one stream (a SharedWorker), so the console's other
    pages still load at once and every tab still shows its run's steps."""
    run_ids = [web.start(ALICE, "scripted", f"cancel: tab {n}") for n in range(7)]
    tabs = []
    try:
        for run_id in run_ids:
            tab = alice.new_page()
            tab.goto(f"{web.url}/runs/{run_id}")
            tabs.append(tab)
        for tab in tabs:
            tab.locator("#step-rows tr[data-seq='1']").wait_for(timeout=10_000)
            assert tab.locator("#run").get_attribute("data-channel") == "shared"
        other = alice.new_page()
        other.goto(f"{web.url}/?agent=scripted", timeout=5_000)  # would wait for a free connection otherwise
        for run_id in run_ids:
            other.locator(f'#run-rows tr[data-run-id="{run_id}"]').wait_for(timeout=5_000)
        other.close()
    finally:
        for run_id in run_ids:
            request = ex.CancelRunRequest(run_id=run_id, mode=ex.CANCEL_MODE_IMMEDIATE)
            web.call(lambda request=request: web.stack.execution_stub(ALICE).CancelRun(request))  # type: ignore[misc]
    for tab in tabs:
        tab.locator("#run[data-finished='CANCELLED']").wait_for(timeout=15_000)
        tab.close()


def test_a_live_page_says_what_is_wrong_with_its_stream(browser: Any, web: WebStack) -> None:
    """ExecutionService down: the page shows its message and asks again later and later (backoff). ExecutionService
    silent: after AGENTRUN_WEB_LIVE_FIRST_EVENT_S the page says it has heard nothing, instead of spinning."""
    stuck = run_to_pb(make_run(user="alice", agent="stuck", status=RunStatus.RUNNING, model_calls=2, tool_calls=1))
    web.record(stuck)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts connections and never answers
        down = f"127.0.0.1:{free_port()}"
        quiet = f"127.0.0.1:{silent.getsockname()[1]}"
        for target, wanted in (
            (down, [f"ExecutionService at {down} is unreachable: retrying in 1 s", "unreachable: retrying in 2 s"]),
            (quiet, ["no word from the live stream after 1.5 s"]),
        ):
            settings = WebSettings(
                address="127.0.0.1:0",
                runs_target=web.stack.runs_address,
                execution_target=target,
                auth=WebAuth.TOKENS,
                live_first_event_s=1.5,
                log_format="text",
            )
            with console_only(settings) as console:
                context = sign_in_at(browser, console.url.rstrip("/"), ALICE)
                page = context.new_page()
                page.goto(f"{console.url.rstrip('/')}/runs/{stuck.id}")
                state = page.locator("#live-state")
                for text in wanted:
                    page.wait_for_function(
                        "text => document.getElementById('live-state').textContent.includes(text)", arg=text
                    )
                assert page.locator("#live-bar").get_attribute("class") == "live-bar lost", state.inner_text()
                context.close()


def test_a_browser_without_shared_workers_follows_the_run_on_a_stream_of_its_own(alice: Any, web: WebStack) -> None:
    run_id = web.start(ALICE, "scripted", "slow: no shared worker here")
    page = alice.new_page()
    page.add_init_script("delete window.SharedWorker")
    page.goto(f"{web.url}/runs/{run_id}")
    page.locator("#run[data-finished]").wait_for(timeout=20_000)
    assert page.locator("#run").get_attribute("data-channel") == "own"
    stored = web.wait_stored(run_id)
    sequences = page.locator("#step-rows tr[data-seq]").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert sequences == [step.sequence for step in stored.execution_steps]
    assert page.locator("#status-badge").inner_text() == "COMPLETED"
    page.close()


def test_a_queued_run_shows_queued_then_runs_live_on_the_same_page(browser: Any, tmp_path: Path) -> None:
    gate = Gate()
    with web_stack(tmp_path, execution={"max_concurrent_runs": 1}) as web:
        web.stack.gemini.set_responder(gate.respond)
        web.start(ALICE, "scripted", "wait for the gate")  # holds the only slot
        queued_id = web.start(ALICE, "scripted", "then me")
        context = sign_in(browser, web, ALICE)
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{web.url}/runs/{queued_id}")
            mark_document(page)
            page.locator('#status-badge[data-status="QUEUED"]').wait_for()
            page.locator("#live-state", has_text="queued (position 1").wait_for()
            # A queued run has no turn to let finish: only Cancel (which ends it at once) is offered.
            assert page.locator("#cancel-now").is_visible() and not page.locator("#cancel-after-turn").is_visible()
            gate.open()
            page.locator('#status-badge[data-status="RUNNING"], #status-badge[data-status="COMPLETED"]').wait_for()
            page.locator("#run[data-finished]").wait_for(timeout=30_000)
            assert same_document(page), "the page was reloaded"
            assert page.locator("#status-badge").inner_text() == "COMPLETED"
            assert page.locator("#step-rows tr[data-seq]").count() == len(web.wait_stored(queued_id).execution_steps)
            assert errors == []
        finally:
            context.close()
