"""The web console over HTTP, against the real services: sessions, CSRF, errors shown as pages, the event stream's
resume protocol, paging. (What a browser shows is in test_browser.py; these need no browser.)"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from pydantic import SecretStr

from agentrun_core.domain import RunStatus
from agentrun_core.ids import new_run_id
from agentrun_core.proto_convert import run_to_pb
from agentrun_web.sessions import log_id
from agentrun_web.settings import WebAuth, WebSettings
from tests.support.auth import ALICE, BOB, make_pki
from tests.support.run_factory import make_run
from tests.support.stack import agent_source, free_port, running_stack
from tests.web.support import WebStack, console_only, web_stack

_CSRF = re.compile(r'<meta name="csrf-token" content="([0-9a-f]+)">')


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match is not None, html[:500]
    return match.group(1)


def set_cookie(response: httpx.Response) -> str:
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1, cookies
    return cookies[0]


@contextlib.contextmanager
def signed_in(web: WebStack, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=web.url, follow_redirects=False, timeout=30) as client:
        login = client.get("/login")
        response = client.post("/login", data={"token": token, "csrf_token": csrf_of(login.text), "next": "/"})
        assert response.status_code == 303 and response.headers["location"] == "/", response.text[:300]
        yield client


@pytest.fixture
def alice_http(web: WebStack) -> Iterator[httpx.Client]:
    with signed_in(web, ALICE) as client:
        yield client


def test_sign_in_gives_a_new_httponly_samesite_cookie_and_never_shows_the_token(
    web: WebStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with httpx.Client(base_url=web.url, follow_redirects=False) as client:
        first = client.get("/")
        assert first.status_code == 303 and first.headers["location"] == "/login?next=%2F"
        cookie = set_cookie(first)
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert "Secure" not in cookie  # plain HTTP
        before = client.cookies["agentrun_session"]
        login = client.get("/login?next=%2Fstats")
        response = client.post("/login", data={"token": ALICE, "csrf_token": csrf_of(login.text), "next": "/stats"})
        assert response.status_code == 303 and response.headers["location"] == "/stats"
        after = client.cookies["agentrun_session"]
        assert after != before and ALICE not in after
        page = client.get("/stats")
        assert page.status_code == 200 and "signed in" in page.text
        for seen in (page.text, str(page.headers), str(response.headers), page.url.query.decode()):
            assert ALICE not in seen
        logout = client.post("/logout", data={"csrf_token": csrf_of(page.text)})
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
        assert client.get("/stats").status_code == 303  # the old session is gone
    assert ALICE not in caplog.text
    assert "signed in" in caplog.text


def test_wrong_token_is_refused_on_the_login_page(web: WebStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "not-a-token-0123456789"
    with httpx.Client(base_url=web.url, follow_redirects=False) as client:
        login = client.get("/login")
        response = client.post("/login", data={"token": wrong, "csrf_token": csrf_of(login.text)})
        assert response.status_code == 401
        assert "The services do not accept this token." in response.text and wrong not in response.text
        assert client.get("/").status_code == 303
    assert "sign-in refused" in caplog.text and wrong not in caplog.text


def test_a_non_ascii_token_is_refused_on_the_login_page_without_calling_the_services(web: WebStack) -> None:
    """Before: gRPC refused the metadata ("Invalid metadata") and the page showed an internal error."""
    with httpx.Client(base_url=web.url, follow_redirects=False) as client:
        login = client.get("/login")
        response = client.post("/login", data={"token": "tök-0123456789", "csrf_token": csrf_of(login.text)})
        assert response.status_code == 400
        assert "one word of printable ASCII, no spaces" in response.text


def test_state_changing_requests_need_the_csrf_token_and_this_site(web: WebStack, alice_http: httpx.Client) -> None:
    run_id = new_run_id()
    page = alice_http.get("/")
    token = csrf_of(page.text)
    refused = [
        alice_http.post(f"/runs/{run_id}/cancel", data={"mode": "immediate"}),
        alice_http.post(f"/runs/{run_id}/cancel", data={"csrf_token": "0" * 64}),
        alice_http.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, headers={"origin": "http://evil.test"}),
        alice_http.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, headers={"sec-fetch-site": "cross-site"}),
        alice_http.post("/start", data={"agent": "quick", "task": "x", "run_id": new_run_id()}),
        alice_http.post("/logout", data={}),
    ]
    for response in refused:
        assert response.status_code == 403, response.request.url
        assert "Form expired" in response.text
    # The same cancel with the token: the service's own answer (no such live run).
    accepted = alice_http.post(f"/runs/{run_id}/cancel", data={"csrf_token": token, "mode": "immediate"})
    assert accepted.status_code == 303 and accepted.headers["location"] == f"/runs/{run_id}?cancel=refused"
    # Another session's token is not this session's token.
    with signed_in(web, BOB) as bob:
        stolen = bob.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
        assert stolen.status_code == 403


def test_following_a_link_from_another_site_keeps_the_session(web: WebStack, alice_http: httpx.Client) -> None:
    """A SameSite=Strict cookie is not sent on a cross-site navigation: the console answers with a page that reloads
    itself (then the browser sends it), and never replaces the cookie it could not see."""
    cross_site = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate"}
    with httpx.Client(base_url=web.url, follow_redirects=False) as stranger:
        response = stranger.get("/runs/" + new_run_id(), headers=cross_site)
        assert response.status_code == 200 and 'http-equiv="refresh"' in response.text
        assert "set-cookie" not in response.headers


def test_bad_run_id_shows_the_services_message(alice_http: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="agentrun_web")
    response = alice_http.get("/runs/not-a-run-id")
    assert response.status_code == 400
    assert "RunsService answered INVALID_ARGUMENT" in response.text and "run_id" in response.text
    assert "Traceback" not in response.text
    # The console's log of the request names it: its path and the browser session (a digest, never the id).
    cookie = alice_http.cookies.get("agentrun_session") or ""
    logged = [r for r in caplog.records if getattr(r, "request_path", "") == "/runs/not-a-run-id"]
    assert logged, [r.getMessage() for r in caplog.records]
    assert {getattr(r, "browser_session", "") for r in logged} == {log_id(cookie)}
    assert cookie and cookie not in caplog.text


def test_unknown_run_is_not_found(alice_http: httpx.Client) -> None:
    response = alice_http.get(f"/runs/{new_run_id()}")
    assert response.status_code == 404
    assert "<h1>Not found</h1>" in response.text and "not found" in response.text


def test_a_step_in_the_url_opens_its_details_and_a_step_the_run_lacks_says_so(
    web: WebStack, alice_http: httpx.Client
) -> None:
    run = web.execute(ALICE, "quick", "steps in the pane")
    answer = run.execution_steps[-1]  # the final answer: a step without a bar of the waterfall
    assert answer.WhichOneof("payload") == "final_response"
    page = alice_http.get(f"/runs/{run.id}?step={answer.sequence}").text
    assert f'class="detail k-final_response" data-seq="{answer.sequence}"' in page
    missing = alice_http.get(f"/runs/{run.id}?step=999").text
    notice = re.search(r'id="no-such-step" role="status">([^<]*)<', missing)
    assert notice is not None
    assert notice.group(1) == f"This run has no step 999 (its steps are 1 to {len(run.execution_steps)})."
    for bad in ("-1", "abc"):
        page = alice_http.get(f"/runs/{run.id}", params={"step": bad}).text
        notice = re.search(r'id="no-such-step" role="status">([^<]*)<', page)
        assert notice is not None and notice.group(1) == f"?step= takes a step's number (1, 2, ...), not {bad}."


def test_unknown_page_is_a_not_found_page(alice_http: httpx.Client) -> None:
    response = alice_http.get("/nothing/here")
    assert response.status_code == 404 and "There is no page at /nothing/here." in response.text


def test_event_stream_resumes_after_the_last_event_id(web: WebStack, alice_http: httpx.Client) -> None:
    run = web.execute(ALICE, "quick", "stream me")  # finished, still known to ExecutionService
    steps = [step.sequence for step in run.execution_steps]

    def ids(headers: dict[str, str]) -> tuple[list[int], list[str]]:
        with alice_http.stream("GET", f"/runs/{run.id}/events", headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join(response.iter_text())
        events = re.findall(r"^event: (\w+)$", text, flags=re.MULTILINE)
        return [int(value) for value in re.findall(r"^id: (\d+)$", text, flags=re.MULTILINE)], events

    everything, events = ids({})
    assert everything == steps
    assert events[0] == "started" and events[-1] == "finished"
    resumed, events = ids({"last-event-id": "3"})
    assert resumed == steps[3:]
    assert events[-1] == "finished"
    assert sorted(everything[:3] + resumed) == steps  # together: every step once


def test_event_stream_carries_a_sub_agents_steps_under_their_run(web: WebStack, alice_http: httpx.Client) -> None:
    run = web.execute(ALICE, "team", "delegate this")  # finished, still known to ExecutionService
    [call] = [s.tool_call for s in run.execution_steps if s.HasField("tool_call")]
    child = web.wait_stored(call.child_run_id)
    with alice_http.stream("GET", f"/runs/{run.id}/events") as response:
        text = "".join(response.iter_text())
    events = re.findall(r"^event: (\w+)$", text, flags=re.MULTILINE)
    # Only the run's own steps carry an SSE id (a reconnect resumes after them); the child's come as child_step.
    assert [int(v) for v in re.findall(r"^id: (\d+)$", text, flags=re.MULTILINE)] == [
        s.sequence for s in run.execution_steps
    ]
    assert events.count("child_step") == len(child.execution_steps) > 0
    assert f"/runs/{child.id}?step=1#pane" in text
    assert events.index("child_step") > events.index("step")  # after the call that started it


def test_event_stream_of_another_users_run_says_gone(web: WebStack, alice_http: httpx.Client) -> None:
    theirs = web.start(BOB, "scripted", "cancel: bob waits")
    try:
        with alice_http.stream("GET", f"/runs/{theirs}/events") as response:
            text = "".join(response.iter_text())
        assert "event: gone" in text and "event: step" not in text
        assert alice_http.get(f"/runs/{theirs}").status_code == 404
    finally:
        with signed_in(web, BOB) as bob:
            token = csrf_of(bob.get("/").text)
            assert bob.post(f"/runs/{theirs}/cancel", data={"csrf_token": token}).status_code == 303


def test_start_form_shows_the_services_message_for_a_bad_variable(alice_http: httpx.Client) -> None:
    form = alice_http.get("/start?agent=withvars")
    data = {
        "csrf_token": csrf_of(form.text),
        "agent": "withvars",
        "task": "hello",
        "run_id": new_run_id(),
        "var.city": "Lima",
        "var.days": "many",
    }
    response = alice_http.post("/start", data=data)
    assert response.status_code == 400
    assert "ExecutionService answered INVALID_ARGUMENT" in response.text and "days" in response.text
    assert 'value="Lima"' in response.text  # what was typed is kept


def test_sending_the_start_form_twice_starts_one_run(web: WebStack, alice_http: httpx.Client) -> None:
    form = alice_http.get("/start?agent=quick")
    run_id = re.search(r'name="run_id" value="([0-9a-f-]{36})"', form.text)
    assert run_id is not None
    data = {"csrf_token": csrf_of(form.text), "agent": "quick", "task": "once", "run_id": run_id.group(1)}
    first, second = alice_http.post("/start", data=data), alice_http.post("/start", data=data)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"] == f"/runs/{run_id.group(1)}"
    web.wait_stored(run_id.group(1))
    listed = [run.id for run in web.list_runs(ALICE, 'agent_name = "quick"').runs]
    assert listed.count(run_id.group(1)) == 1


def test_runs_page_pages_with_keyset_tokens_and_keeps_the_view_in_the_url(
    web: WebStack, alice_http: httpx.Client
) -> None:
    for _ in range(3):
        web.execute(ALICE, "quick", "page me")
    first = alice_http.get("/", params={"agent": "quick", "size": "2", "order": "start_time asc"})
    assert first.status_code == 200
    rows = re.findall(r'data-run-id="([0-9a-f-]{36})"', first.text)
    assert len(rows) == 2
    next_url = re.search(r'<a href="([^"]+)" rel="next"', first.text)
    assert next_url is not None
    second = alice_http.get(next_url.group(1).replace("&amp;", "&"))
    more = re.findall(r'data-run-id="([0-9a-f-]{36})"', second.text)
    assert more and not set(more) & set(rows)
    previous = re.search(r'<a href="([^"]+)" rel="prev"', second.text)
    assert previous is not None and "agent=quick" in previous.group(1)
    again = alice_http.get(previous.group(1).replace("&amp;", "&"))
    assert re.findall(r'data-run-id="([0-9a-f-]{36})"', again.text) == rows


def test_rows_fragment_is_not_sent_again_when_nothing_changed(alice_http: httpx.Client) -> None:
    headers = {"x-agentrun-fragment": "1"}
    first = alice_http.get("/", headers=headers)
    assert first.status_code == 200 and "<tr" in first.text and "<html" not in first.text
    again = alice_http.get("/", headers={**headers, "if-none-match": first.headers["etag"]})
    assert again.status_code == 304


def test_services_that_are_down_are_named_on_the_page_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs, execution = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    settings = WebSettings(
        address="127.0.0.1:0", runs_target=runs, execution_target=execution, auth=WebAuth.OFF, call_timeout_s=5
    )
    caplog.set_level(logging.INFO)
    with console_only(settings) as console, httpx.Client(base_url=console.url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 503
        assert "RunsService is unavailable" in page.text and f"cannot reach RunsService at {runs}" in page.text
        assert "AGENTRUN_RUNS_TARGET" in page.text and "Traceback" not in page.text
        start = client.get("/start")
        assert start.status_code == 503 and f"cannot reach ExecutionService at {execution}" in start.text
        assert client.get(f"/runs/{new_run_id()}").status_code == 503
        assert client.get("/stats").status_code == 503
    failures = [r for r in caplog.records if r.getMessage() == "service call failed"]
    assert {getattr(r, "service", None) for r in failures} == {"RunsService", "ExecutionService"}
    assert all(getattr(r, "code", None) == "UNAVAILABLE" and getattr(r, "path", None) for r in failures)


def test_a_live_run_is_shown_from_execution_service_while_runs_service_is_down(web: WebStack) -> None:
    """RunsService unreachable: the page of a live run still shows it (from its stream) and says why it lacks its
    record; a run that is not live is the 503 page."""
    run_id = web.start(ALICE, "scripted", "cancel: live while RunsService is away")
    down = f"127.0.0.1:{free_port()}"
    settings = WebSettings(
        address="127.0.0.1:0",
        runs_target=down,
        execution_target=web.stack.execution_address,
        auth=WebAuth.TOKENS,
        token=SecretStr(ALICE),
        call_timeout_s=5,
    )
    try:
        with console_only(settings) as console, httpx.Client(base_url=console.url, timeout=30) as client:
            page = client.get(f"/runs/{run_id}")
            assert page.status_code == 200, page.text[:1000]
            notice = re.search(r'id="runs-problem" role="status">([^<]*)<', page.text)
            assert notice is not None and f"RunsService at {down} cannot be read now (UNAVAILABLE" in notice.group(1)
            assert 'id="live-bar"' in page.text and 'data-partial="1"' in page.text
            assert client.get(f"/runs/{new_run_id()}").status_code == 503
    finally:

        async def cancel() -> None:
            await web.stack.execution_stub(ALICE).CancelRun(ex.CancelRunRequest(run_id=run_id))

        web.loop.run(cancel())


def test_a_service_that_does_not_answer_in_time_is_a_clear_deadline(tmp_path: Path) -> None:
    """A listener that accepts connections and never speaks: the call's deadline passes."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(silent.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    target = f"127.0.0.1:{silent.getsockname()[1]}"
    settings = WebSettings(
        address="127.0.0.1:0", runs_target=target, execution_target=target, auth=WebAuth.OFF, call_timeout_s=0.5
    )
    try:
        with console_only(settings) as console, httpx.Client(base_url=console.url, timeout=30) as client:
            page = client.get("/")
            assert page.status_code == 504, page.text
            assert f"RunsService at {target} did not answer ListRuns within 0.5 s" in page.text
            assert "Traceback" not in page.text
    finally:
        stop.set()
        thread.join(5)
        for conn in accepted:
            conn.close()
        silent.close()


def test_console_served_over_https_marks_the_cookie_secure(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    settings = WebSettings(
        address="127.0.0.1:0",
        runs_target=f"127.0.0.1:{free_port()}",
        execution_target=f"127.0.0.1:{free_port()}",
        https_cert=pki.server_cert,
        https_key=pki.server_key,
    )
    with console_only(settings) as console:
        assert console.url.startswith("https://")
        with httpx.Client(
            base_url=console.url, verify=ssl.create_default_context(cafile=str(pki.ca)), follow_redirects=False
        ) as client:
            response = client.get("/login")
            assert response.status_code == 200
            assert "Secure" in set_cookie(response).split("; ")


def test_single_user_console_serves_every_page_as_its_token_user(web: WebStack) -> None:
    mine = web.execute(ALICE, "quick", "single-user view")
    theirs = web.execute(BOB, "quick", "not for alice")
    settings = WebSettings(
        address="127.0.0.1:0",
        runs_target=web.stack.runs_address,
        execution_target=web.stack.execution_address,
        auth=WebAuth.TOKENS,
        token=SecretStr(ALICE),
        trace_url="http://traces.test/trace/{trace_id}",
    )
    with console_only(settings) as console, httpx.Client(base_url=console.url, follow_redirects=False) as client:
        runs = client.get("/?agent=quick")
        assert runs.status_code == 200 and "single-user console" in runs.text
        assert mine.id in runs.text and theirs.id not in runs.text
        assert client.get("/login").status_code == 303  # nobody signs in
        page = client.get(f"/runs/{mine.id}")
        assert f'href="http://traces.test/trace/{mine.trace_id}"' in page.text
        assert client.get(f"/runs/{theirs.id}").status_code == 404
        assert ALICE not in page.text


def test_a_run_tree_shows_its_sub_agent_runs_lineage_and_totals(web: WebStack, alice_http: httpx.Client) -> None:
    from agentrun_core.proto_convert import run_to_pb
    from tests.support.composition import child_of, link_child, top_level, with_totals

    root = top_level(agent="planner", session_id="web-chat-1")
    first = child_of(root, "call-001", agent="researcher", start_offset_s=0.5)
    second = child_of(root, "call-002", agent="writer", start_offset_s=0.8)
    grandchild = child_of(first, "call-001", agent="searcher", start_offset_s=0.1)
    first = with_totals(link_child(first, grandchild), [grandchild])
    root = with_totals(link_child(link_child(root, first), second), [first, second, grandchild])
    for run in (root, first, second, grandchild):
        web.record(run_to_pb(run))

    page = alice_http.get(f"/runs/{root.id}").text
    levels = re.findall(r'<tr data-run-id="([0-9a-f-]{36})" data-level="(\d)"', page)
    assert levels == [(first.id, "1"), (grandchild.id, "2"), (second.id, "1")]  # a tree, each under its parent
    assert root.token_usage_with_descendants is not None
    totals = re.search(
        r'id="token-cards-with-descendants".*?data-field="total_tokens".*?data-value="(\d+)"', page, re.S
    )
    assert totals is not None and int(totals.group(1)) == root.token_usage_with_descendants.total_tokens
    assert 'id="session-link"' in page and "web-chat-1" in page
    child = alice_http.get(f"/runs/{grandchild.id}").text
    assert f'href="/runs/{first.id}" id="parent-link"' in child and "depth 2" in child
    assert f'href="/runs/{root.id}"' in child  # the top-level run of its tree
    listed = alice_http.get("/", params={"filter": 'session_id = "web-chat-1"'}).text
    assert listed.count('class="sub-run"') == 3  # the three sub-agent runs are marked as such
    step = next(
        s
        for s in run_to_pb(root).execution_steps
        if s.WhichOneof("payload") == "tool_call" and s.tool_call.child_run_id
    )
    label = f"{step.tool_call.server}/{step.tool_call.tool_name} → sub-agent run"
    assert f'id="bar-tool-{step.tool_call.call_id}"' in page and label in page  # the waterfall says so too
    detail = alice_http.get(f"/runs/{root.id}/steps/{step.sequence}").text
    assert f'href="/runs/{step.tool_call.child_run_id}"' in detail


@pytest.fixture(scope="module")
def failed_runs_of_two_agents(web: WebStack) -> set[str]:
    """A completed and a failed run of each of the agents h2-a and h2-b; the failed ones' ids."""
    for agent in ("h2-a", "h2-b"):
        for status in (RunStatus.COMPLETED, RunStatus.FAILED):
            web.record(run_to_pb(make_run(user="alice", agent=agent, status=status, model_calls=2, tool_calls=1)))
    failed = {run.id for run in web.list_runs(ALICE, 'status = FAILED AND agent_name = "h2-*"').runs}
    assert len(failed) == 2
    return failed


@pytest.mark.parametrize(
    "typed",
    [
        'agent_name = "h2-a" OR agent_name = "h2-b"',
        '(agent_name = "h2-a")OR(agent_name = "h2-b")',  # no spaces around OR
        'agent_name = "h2-a"\tOR agent_name = "h2-b"',  # a tab, as a shared URL may hold
    ],
)
def test_quick_filters_apply_to_all_of_a_typed_filter_with_or(
    typed: str, failed_runs_of_two_agents: set[str], alice_http: httpx.Client
) -> None:
    """`a OR b` with the status quick filter FAILED lists the failed runs of a and b: (a OR b) AND status = FAILED,
    never a OR (b AND status = FAILED)."""
    page = alice_http.get("/", params={"filter": typed, "status": "FAILED"})
    assert page.status_code == 200, page.text[:500]
    shown = dict(re.findall(r'data-run-id="([0-9a-f-]{36})" data-status="(\w+)"', page.text))
    assert set(shown) == failed_runs_of_two_agents and set(shown.values()) == {"FAILED"}


def test_cancel_without_a_script_comes_back_to_the_run_with_a_notice(web: WebStack, alice_http: httpx.Client) -> None:
    run_id = web.start(ALICE, "scripted", "cancel: from a browser without scripts")
    token = csrf_of(alice_http.get(f"/runs/{run_id}").text)
    answer = alice_http.post(f"/runs/{run_id}/cancel", data={"csrf_token": token, "mode": "immediate"})
    assert answer.status_code == 303 and answer.headers["location"] == f"/runs/{run_id}?cancel=requested"
    deadline = time.monotonic() + 30  # the cancel was requested: the run ends, then its record arrives
    while (status := web.wait_stored(run_id).status) == run_pb2.RUN_STATUS_RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == run_pb2.RUN_STATUS_CANCELLED
    page = alice_http.get(answer.headers["location"])
    notice = re.search(r'id="cancel-result" role="status">([^<]*)<', page.text)
    assert notice is not None, page.text[:2000]
    assert notice.group(1) == "Cancel requested. The run ended CANCELLED."
    again = alice_http.post(f"/runs/{run_id}/cancel", data={"csrf_token": token, "mode": "immediate"})
    refused = alice_http.get(again.headers["location"])
    assert "The run could not be cancelled (it has ended, or runs elsewhere)." in refused.text


async def test_the_start_form_starts_a_run_while_runs_service_is_down_and_once_when_sent_twice(
    tmp_path: Path,
) -> None:
    """RunsService down: ExecutionService cannot check the form's run id (UNAVAILABLE), so the console starts the run
    under an id of its own, and the same form sent again leads to that run, not to a second one."""
    async with running_stack(tmp_path, {"quick": agent_source(tools=["test/echo"])}) as stack:
        settings = WebSettings(
            address="127.0.0.1:0",
            runs_target=stack.runs_address,
            execution_target=stack.execution_address,
            auth=WebAuth.OFF,
            call_timeout_s=5,
        )
        with console_only(settings) as console:
            async with httpx.AsyncClient(base_url=console.url, timeout=30) as client:
                form = (await client.get("/start?agent=quick")).text
                form_run_id = re.search(r'name="run_id" value="([0-9a-f-]{36})"', form)
                assert form_run_id is not None
                await stack.stop_runs()
                data = {"csrf_token": csrf_of(form), "agent": "quick", "task": "while away", "run_id": form_run_id[1]}
                sent = [await client.post("/start", data=data) for _ in range(2)]
        assert [answer.status_code for answer in sent] == [303, 303], sent[0].text[:2000]
        assert sent[0].headers["location"] == sent[1].headers["location"] != f"/runs/{form_run_id[1]}"
        started = sent[0].headers["location"].removeprefix("/runs/")
        await stack.start_runs()
        assert (await stack.stored_run(started, timeout_s=30)).task == "while away"


def _figure(page: str, title: str) -> str:
    match = re.search(rf'<figure class="chart" data-chart="{re.escape(title)}">.*?</figure>', page, re.S)
    assert match is not None, title
    return match.group(0)


def _cost_cell(page: str, table: str, key: str) -> str:
    section = re.search(rf'<table class="stats-table" id="stats-{table}">.*?</table>', page, re.S)
    assert section is not None
    row = re.search(rf'<tr data-key="{re.escape(key)}">.*?</tr>', section.group(0), re.S)
    assert row is not None, key
    return re.findall(r"<td>(.*?)</td>", row.group(0), re.S)[4]


def test_stats_costs_keep_their_currency_and_bars_compare_one_currency(web: WebStack) -> None:
    """1 EUR + 1.5 USD + 0.25 USD + 2.5 EUR today, 7 EUR three days ago: one cost chart per currency, days without a
    priced run say so (never "0 USD"), and the per-agent bars compare EUR costs only (mixed and USD ones as text)."""
    import dataclasses
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from agentrun_core.domain import Cost

    today, old = datetime.now(UTC) - timedelta(seconds=30), datetime.now(UTC) - timedelta(days=3)
    for agent, amount, currency, start in (
        ("cur-mix", "1", "EUR", today),
        ("cur-mix", "1.5", "USD", today),
        ("cur-usd", "0.25", "USD", today),
        ("cur-eur", "2.5", "EUR", today),
        ("cur-eur-old", "7", "EUR", old),
    ):
        run = make_run(user="bob", agent=agent, start_time=start, model_calls=2, tool_calls=1, labels={"probe": "cur"})
        web.record(run_to_pb(dataclasses.replace(run, cost=Cost(Decimal(amount), currency, "test-prices"))))
    with signed_in(web, BOB) as bob:
        page = bob.get("/stats", params={"filter": 'labels.probe = "cur"'}).text

    assert re.findall(r'data-chart="([^"]*)"', page) == [
        "runs", "success rate", "tokens", "cost (EUR)", "cost (USD)", "duration p50 / p95"
    ]  # fmt: skip
    assert "0.0000 USD" not in page and not re.search(r"\b0 USD", page)
    eur, usd = _figure(page, "cost (EUR)"), _figure(page, "cost (USD)")
    day, old_day = f"{today:%m-%d}", f"{old:%m-%d}"
    eur_titles = dict(t.split(": ", 1) for t in re.findall(r'class="column" title="([^"]*)"', eur))
    usd_titles = dict(t.split(": ", 1) for t in re.findall(r'class="column" title="([^"]*)"', usd))
    assert len(eur_titles) == 31
    assert re.fullmatch(r"3\.50* EUR", eur_titles[day]) and re.fullmatch(r"7(\.0*)? EUR", eur_titles[old_day])
    assert re.fullmatch(r"1\.750* USD", usd_titles[day]) and usd_titles[old_day] == "no run priced in USD"
    quiet = next(label for label in eur_titles if label not in (day, old_day))
    assert eur_titles[quiet] == usd_titles[quiet] == "no priced run"
    assert re.search(r"max 7(\.0*)? EUR", eur) and re.search(r"max 1\.750* USD", usd)
    assert "bars: EUR only" in page
    assert 'style="--share: 1.0"' in _cost_cell(page, "agent", "cur-eur-old")
    assert 'style="--share: 0.357' in _cost_cell(page, "agent", "cur-eur")
    mixed, dollars = _cost_cell(page, "agent", "cur-mix"), _cost_cell(page, "agent", "cur-usd")
    assert "hbar-fill" not in mixed and re.search(r"1(\.0*)? EUR \+ 1\.50* USD", mixed)
    assert "priced in 2 currencies: no bar (bars compare EUR costs only)" in mixed
    assert "hbar-fill" not in dollars and "priced in USD: no bar" in dollars and re.search(r"0\.250* USD", dollars)


def test_a_tree_cut_by_size_says_more_runs_are_under_it_and_links_to_them(tmp_path: Path) -> None:
    """5 sub-agent runs of 900 KB: GetRun returns 4 (about 4 MiB together) with descendants_truncated. The page used
    to say "4 (the first 500; all of them)": neither the reason nor the count was right. (A stack of its own: runs
    this large make the shared stack's ListRuns pages shorter.)"""
    with web_stack(tmp_path) as web, signed_in(web, ALICE) as alice_http:
        _check_a_tree_cut_by_size(web, alice_http)


def _check_a_tree_cut_by_size(web: WebStack, alice_http: httpx.Client) -> None:
    import dataclasses

    from tests.support.composition import child_of, link_child, top_level

    root = top_level(agent="big-tree", model_calls=4, tool_calls=5)
    children = [
        dataclasses.replace(
            child_of(root, f"call-00{i}", agent="big-kid", start_offset_s=0.1 * i), final_response="k" * 900_000
        )
        for i in range(1, 6)
    ]
    for child in children:
        root = link_child(root, child)
    for run in (root, *children):
        web.record(run_to_pb(run))

    page = alice_http.get(f"/runs/{root.id}").text
    assert len(re.findall(r'<tr data-run-id="[0-9a-f-]{36}" data-level="1"', page)) == 4
    heading = re.search(r"<h2>Sub-agent runs <small[^>]*>(.*?)</small></h2>", page, re.S)
    assert heading is not None
    text = re.sub(r"<[^>]+>", "", heading.group(1))
    assert text == (
        "4 shown, the first by start time; more runs are under this one "
        "(every sub-agent run of its tree, in the runs list)"
    )
    assert "first 500" not in page and "all of them" not in page
    link = re.search(r'href="([^"]*)" id="whole-tree-link"', heading.group(1))
    assert link is not None
    listed = alice_http.get(link.group(1).replace("&amp;", "&")).text
    listed_ids = re.findall(r'<tr class="run-row[^"]*" data-run-id="([0-9a-f-]{36})"', listed)
    # The tree's runs by start time (paged: ListRuns pages are size-capped too).
    assert listed_ids and listed_ids == [child.id for child in children][: len(listed_ids)]
