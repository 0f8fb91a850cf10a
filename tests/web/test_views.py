"""The console's pure parts: waterfall geometry, step and run views (unknown enums and step kinds included), markers,
the runs query in the URL, stats shaping, the agent form, settings and sessions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

import grpc
import pytest
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2
from google.protobuf import duration_pb2

from agentrun_core.domain import RunStatus
from agentrun_core.proto_convert import run_to_pb
from agentrun_core.settings import SettingsError
from agentrun_web.agent_names import AgentNames
from agentrun_web.clients import Caller, Endpoint, ExecutionApi, ServiceCallError
from agentrun_web.rendering import Renderer
from agentrun_web.sessions import SessionStore
from agentrun_web.settings import WebAuth, WebSettings
from agentrun_web.views import format as fmt
from agentrun_web.views import stats as sv
from agentrun_web.views import waterfall as wf
from agentrun_web.views.agent_form import parse_labels, submitted_variables, variable_fields
from agentrun_web.views.run_details import run_page
from agentrun_web.views.run_list import QueryError, RunsQuery, run_row
from agentrun_web.views.steps import step_row
from tests.support.run_factory import make_run


def seconds(value: object) -> float:
    return value.seconds + value.nanos / 1e9  # type: ignore[attr-defined]


def test_waterfall_has_one_bar_per_call_with_the_stored_durations() -> None:
    run = run_to_pb(make_run(model_calls=5, tool_calls=8))
    fall = wf.build(run.execution_steps, run.start_time, run_end_s=seconds(run.duration))
    assert fall.model_calls == 5 and fall.tool_calls == 8
    by_key = {bar.key: bar for bar in fall.bars}
    for step in run.execution_steps:
        if step.WhichOneof("payload") == "model_call":
            bar = by_key[f"model-{step.sequence}"]
            assert bar.duration_s == pytest.approx(seconds(step.duration))
            assert bar.ttft_s == pytest.approx(seconds(step.model_call.time_to_first_token))
            assert bar.start_s == pytest.approx(fmt.offset_s(run.start_time, step.time))
    for call in run.tool_calls:
        bar = by_key[f"tool-{call.id}"]
        assert bar.duration_s == pytest.approx(seconds(call.duration))
        assert bar.state == ("failed" if call.is_error else "ok")
        assert len(bar.steps) == 2
    assert fall.span_s == pytest.approx(seconds(run.duration))
    assert [bar.start_s for bar in fall.bars] == sorted(bar.start_s for bar in fall.bars)


def _step(sequence: int, at: float, **payload: object) -> run_pb2.ExecutionStep:
    step = run_pb2.ExecutionStep(run_id="r", sequence=sequence, **payload)  # type: ignore[arg-type]
    step.time.FromDatetime(datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=at))
    return step


def test_unfinished_calls_run_on_while_live_and_say_so_once_the_run_ended() -> None:
    start = _step(0, 0.0).time
    steps = [
        _step(1, 0.5, tool_call=run_pb2.ToolCallStarted(call_id="a", tool_name="t", server="s")),
        _step(2, 0.5, tool_call=run_pb2.ToolCallStarted(call_id="b", tool_name="t", server="s")),
        _step(3, 0.9, tool_result=run_pb2.ToolCallFinished(call_id="b", tool_name="t", status=7)),  # type: ignore[arg-type]
    ]
    steps[2].tool_result.duration.FromTimedelta(timedelta(milliseconds=400))
    live = wf.build(steps, start, live=True)
    assert [(bar.key, bar.state) for bar in live.bars] == [("tool-a", "running"), ("tool-b", "unknown")]
    assert live.bars[1].note == "STATUS_7"  # a status this console does not know: its number, not an error
    ended = wf.build(steps, start, run_end_s=2.0)
    assert ended.bars[0].state == "no-result" and ended.bars[0].duration_s == pytest.approx(1.5)


def test_a_resumption_is_a_bar_over_the_gap_it_ended_and_the_call_made_again_spans_it() -> None:
    """A durable run whose replica was killed mid tool call: the call's result came after the takeover's gap."""
    start = _step(0, 0.0).time
    resumed = _step(3, 6.0, resumed=run_pb2.RunResumed(replica="rb", previous_replica="ra"))
    resumed.resumed.gap.FromTimedelta(timedelta(seconds=5))
    steps = [
        _step(1, 0.5, tool_call=run_pb2.ToolCallStarted(call_id="a", tool_name="sleep", server="s")),
        resumed,
        _step(4, 7.5, tool_result=run_pb2.ToolCallFinished(call_id="a", tool_name="sleep")),
    ]
    steps[2].tool_result.duration.FromTimedelta(timedelta(seconds=7))
    fall = wf.build(steps, start, run_end_s=8.0)
    assert [(bar.kind, bar.start_s, bar.duration_s) for bar in fall.bars] == [
        ("tool", 0.5, 7.0),
        ("resumed", 1.0, 5.0),
    ]
    gap = fall.bars[1]
    assert (gap.label, gap.note, gap.steps) == ("resumed on rb", "after 5 s (was ra)", [3])
    assert fall.model_calls == 0 and fall.tool_calls == 1


def test_a_gap_bar_that_starts_with_the_call_it_interrupted_sorts_after_it() -> None:
    """Found by an outside audit: time - gap lands on the interrupted call's start up to float error
    (0.08821999999999974 against 0.08822), which put the gap first on a reloaded page and second on the live one."""
    start = _step(0, 0.0).time
    resumed = _step(3, 4.56822, resumed=run_pb2.RunResumed(replica="a", previous_replica="b"))
    resumed.resumed.gap.FromTimedelta(timedelta(seconds=4.48))
    steps = [_step(2, 0.08822, tool_call=run_pb2.ToolCallStarted(call_id="s", tool_name="sleep", server="t")), resumed]
    assert [bar.kind for bar in wf.build(steps, start).bars] == ["tool", "resumed"]


@pytest.mark.parametrize(
    ("status", "is_error", "state"),
    [
        (run_pb2.TOOL_CALL_STATUS_SUCCEEDED, False, "ok"),
        (run_pb2.TOOL_CALL_STATUS_SUCCEEDED, True, "failed"),
        (run_pb2.TOOL_CALL_STATUS_FAILED, True, "failed"),
        (run_pb2.TOOL_CALL_STATUS_TIMED_OUT, True, "timed-out"),
        (run_pb2.TOOL_CALL_STATUS_CANCELLED, True, "cancelled"),
        (run_pb2.TOOL_CALL_STATUS_UNSPECIFIED, False, "ok"),
    ],
)
def test_tool_call_states(status: int, is_error: bool, state: str) -> None:
    assert wf.tool_state(run_pb2.ToolCallFinished(status=status, is_error=is_error)) == state  # type: ignore[arg-type]


def test_nice_ticks() -> None:
    assert [tick.label for tick in wf.ticks(2.3)] == ["0", "500 ms", "1 s", "1.50 s", "2 s"]
    assert wf.nice_step(0.004) == pytest.approx(0.0005)


def _unknown_payload_step() -> run_pb2.ExecutionStep:
    """A step whose payload is a oneof member this console's stubs do not know (field 40, from a newer service)."""
    known = _step(3, 1.0).SerializeToString()
    unknown_field = bytes([(40 << 3 | 2) & 0x7F | 0x80, (40 << 3 | 2) >> 7, 2]) + b"\x08\x01"
    step = run_pb2.ExecutionStep()
    step.ParseFromString(known + unknown_field)
    assert step.WhichOneof("payload") is None
    return step


def test_unknown_status_and_step_kind_are_shown_not_fatal() -> None:
    run = run_to_pb(make_run(model_calls=2, tool_calls=1))
    run.status = 42  # type: ignore[assignment]  # e.g. a RUN_STATUS_QUEUED from a newer service
    run.execution_steps.append(_unknown_payload_step())
    renderer = Renderer()
    row = run_row(run)
    assert row.status == "STATUS_42" and row.status_class == "s-unknown"
    page = run_page(run, trace_link="")
    assert page.status == "STATUS_42"
    unknown = step_row(run.execution_steps[-1], run.start_time)
    assert unknown.kind == "unknown" and "does not know" in unknown.summary
    html = renderer.fragment("_step_detail.html", step=run.execution_steps[-1], run_id=run.id)
    assert "unknown step kind" in html and "newer service" in html
    status_html = renderer.fragment("_run_status.html", page=page)
    assert "STATUS_42" in status_html


def test_markers_are_shown_as_markers_and_everything_else_is_escaped() -> None:
    text = '<b>x</b> {"password": "[REDACTED]"} tail\n[truncated: 5000 bytes in all, 2000 kept]'
    html = str(fmt.marked(text))
    assert "&lt;b&gt;x&lt;/b&gt;" in html
    assert '<mark class="marker redacted"' in html and ">[REDACTED]</mark>" in html
    assert '<mark class="marker truncated"' in html
    assert fmt.has_redaction(text) and not fmt.has_redaction("plain")


@pytest.mark.parametrize(
    ("typed", "combined"),
    [
        ('agent_name = "a)b"', '(agent_name = "a)b") AND status = FAILED'),  # a parenthesis inside a string
        (
            "(status = FAILED) OR (status = COMPLETED)",
            "((status = FAILED) OR (status = COMPLETED)) AND status = FAILED",
        ),
        # It would close the console's parenthesis and leave the quick filter applying to half of it: sent alone,
        # the service refuses it with its own message.
        ("status = FAILED) OR (status = COMPLETED", "status = FAILED) OR (status = COMPLETED"),
        ("(status = FAILED", "(status = FAILED"),
    ],
)
def test_a_typed_filter_cannot_escape_the_quick_filters(typed: str, combined: str) -> None:
    assert RunsQuery(filter=typed, status="FAILED").combined_filter() == combined


def test_runs_query_round_trips_through_the_url() -> None:
    query = RunsQuery.from_params(
        {"filter": 'status = FAILED OR user = "x"', "status": "completed", "agent": 'we"ird', "size": "20"}
    )
    assert query.combined_filter() == (
        '(status = FAILED OR user = "x") AND status = COMPLETED AND agent_name = "we\\"ird"'
    )
    request = query.request()
    assert request.page_size == 20 and request.view == runs_pb2.RUN_VIEW_BASIC
    page2 = RunsQuery.from_params(dict(_params(query.next_url("T2"))))
    assert page2.page == "T2" and page2.back == ("",) and page2.filter == query.filter
    page3 = RunsQuery.from_params(dict(_params(page2.next_url("T3"))))
    assert page3.back == ("", "T2")
    assert RunsQuery.from_params(dict(_params(page3.previous_url() or ""))).page == "T2"
    assert page2.previous_url() == query.url()
    with pytest.raises(QueryError, match="page size"):
        RunsQuery.from_params({"size": "5000"})
    with pytest.raises(QueryError, match="unknown status"):
        RunsQuery.from_params({"status": "sleeping"})
    kept, problems = RunsQuery.parse({"filter": "x", "agent": "a", "order": "cost asc", "status": "no", "size": "0"})
    assert [p.field for p in problems] == ["size", "status"]
    assert kept == RunsQuery(filter="x", agent="a", order="cost asc")


def _params(url: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl, urlsplit

    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def test_stats_days_are_all_there_and_ranges_are_checked() -> None:
    now = datetime(2026, 11, 30, 12, tzinfo=UTC)
    span = sv.time_range({}, now=now)
    assert span.key == "30d" and span.end == now and len(span.days()) == 31
    groups = [runs_pb2.RunStatsGroup(key="2026-11-29", run_count=4, completed_count=3, success_rate=0.75)]
    charts = sv.day_charts(groups, span.days())
    runs_chart = charts[0]
    assert len(runs_chart.columns) == 31 and sum(1 for c in runs_chart.columns if c.height) == 1
    assert charts[1].columns[-2].height == pytest.approx(0.75)
    custom = sv.time_range({"from": "2026-11-01", "to": "2026-11-03"}, now=now)
    assert custom.days() == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert custom.key == sv.CUSTOM_RANGE
    # "custom days" chosen in the menu without days (a browser without scripts) says what is missing.
    for bad, message in (
        ({"range": "1y"}, "unknown range"),
        ({"from": "2026-11-05", "to": "2026-11-01"}, "before"),
        ({"range": "custom"}, "needs its first day"),
    ):
        with pytest.raises(sv.RangeError, match=message):
            sv.time_range(bad, now=now)


def test_agent_form_fields_come_from_the_input_schema() -> None:
    schema = (
        '{"type":"object","properties":{"city":{"type":"string","description":"where"},'
        '"days":{"type":"integer","default":3},"mode":{"enum":["a","b"]},"loud":{"type":"boolean"}},'
        '"required":["city"]}'
    )
    fields = variable_fields(schema)
    assert [f.name for f in fields] == ["city", "days", "mode", "loud"]
    assert fields[0].required and fields[0].description == "where"
    assert fields[1].default == "3" and fields[2].choices == ("a", "b") and fields[3].choices == ("true", "false")
    assert submitted_variables({"var.city": "Lima", "var.days": "", "task": "x"}) == {"city": "Lima"}
    assert parse_labels("team=web\nenv = prod") == {"team": "web", "env": "prod"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_labels("oops")
    agent = ex_pb2.Agent(name="a", input_schema_json="[1]")
    from agentrun_web.views.agent_form import agent_choice

    assert "cannot be read" in agent_choice(agent).schema_problem
    down = ex_pb2.Agent(name="reviewer", tool_problems=["MCP server 'git' is down: exited"])
    assert agent_choice(down).tool_problems == ("MCP server 'git' is down: exited",)


def test_settings_read_the_environment_and_name_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AGENTRUN_WEB_AUTH", "AGENTRUN_AUTH", "AGENTRUN_WEB_TOKEN", "AGENTRUN_WEB_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    settings = WebSettings.load()
    assert settings.address == "127.0.0.1:8080" and settings.auth is WebAuth.TOKENS and settings.needs_login
    monkeypatch.setenv("AGENTRUN_AUTH", "OFF")
    assert WebSettings.load().auth is WebAuth.OFF
    monkeypatch.setenv("AGENTRUN_WEB_AUTH", "tokens")  # the console's own setting wins
    assert WebSettings.load().auth is WebAuth.TOKENS
    monkeypatch.setenv("AGENTRUN_WEB_TOKEN", "single-user-token-0123")
    single = WebSettings.load(address="0.0.0.0:9000")
    assert not single.needs_login and single.host_port() == ("0.0.0.0", 9000)
    assert "single-user-token" not in repr(single)
    monkeypatch.setenv("AGENTRUN_WEB_REFRESH_S", "soon")
    with pytest.raises(SettingsError, match="AGENTRUN_WEB_REFRESH_S"):
        WebSettings.load()
    monkeypatch.delenv("AGENTRUN_WEB_REFRESH_S")
    monkeypatch.setenv("AGENTRUN_WEB_TRACE_URL", "http://jaeger:16686/trace/")
    with pytest.raises(SettingsError, match=r"AGENTRUN_WEB_TRACE_URL.*\{trace_id\}"):
        WebSettings.load()
    monkeypatch.setenv("AGENTRUN_WEB_TRACE_URL", "http://jaeger:16686/trace/{trace_id}")
    assert WebSettings.load().trace_link("abc") == "http://jaeger:16686/trace/abc"
    with pytest.raises(SettingsError, match="HOST:PORT"):
        WebSettings.load(address="nowhere")
    with pytest.raises(SettingsError, match="AGENTRUN_WEB_TLS_KEY"):
        WebSettings.load(https_cert="cert.pem")


def test_sessions_expire_are_capped_and_each_has_its_own_csrf_token() -> None:
    clock = [0.0]
    store = SessionStore(ttl_s=10, max_sessions=2, clock=lambda: clock[0])
    first = store.sign_in(None, "t1")
    assert store.get(first.id) is first
    assert store.csrf_matches(first.id, store.csrf_token(first.id))
    assert not store.csrf_matches("another-id", store.csrf_token(first.id))
    second = store.sign_in(first.id, "t2")  # signing in again ends the old session
    assert store.get(first.id) is None and store.get(second.id) is second
    store.sign_in(None, "t3")
    store.sign_in(None, "t4")  # over the cap: the least recently used goes
    assert store.get(second.id) is None and len(store) == 2
    clock[0] = 11
    assert all(store.get(session_id) is None for session_id in list(store._sessions))


def test_run_page_of_a_live_run_counts_the_tokens_of_its_steps() -> None:
    run = run_to_pb(make_run(status=RunStatus.RUNNING, model_calls=3, tool_calls=2))
    page = run_page(run, trace_link="http://t/abc")
    steps_usage = sum(
        step.model_call.usage.input_tokens for step in run.execution_steps if step.WhichOneof("payload") == "model_call"
    )
    assert page.live and page.cards[0].value == steps_usage
    assert page.from_sequence == len(run.execution_steps) + 1


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/runs/x?step=3", "/runs/x?step=3"),
        ("/stats", "/stats"),
        ("//evil.test/", "/"),
        ("/\\evil.test/", "/"),
        ("/\t/evil.test/", "/"),
        ("https://evil.test/", "/"),
        ("", "/"),
    ],
)
def test_sign_in_only_returns_to_this_console(target: str, safe: str) -> None:
    from agentrun_web.routes.auth import safe_next

    assert safe_next(target) == safe


def test_a_session_history_step_is_shown_with_its_runs() -> None:
    history = run_pb2.SessionHistory(
        session_id="chat-9", run_ids=["r-1", "r-2"], turn_count=6, dropped_turn_count=2, dropped_run_ids=["r-1"]
    )
    step = _step(1, 0.0, session_history=history)
    row = step_row(step, step.time)
    assert row.kind == "session_history" and "session chat-9: 6 turns from 2 runs" in row.summary
    html = Renderer().fragment("_step_detail.html", step=step, run_id="r-3")
    assert "session history" in html and 'href="/runs/r-2"' in html and "(dropped)" in html


class _AgentsByCaller:
    """ListAgents as a service that shows each person their own agents (and refuses unknown tokens)."""

    def __init__(self, agents: dict[str, list[str]]) -> None:
        self.agents = agents
        self.calls = 0

    async def list_agents(self, caller: Caller, *, timeout_s: float | None = None) -> ex_pb2.ListAgentsResponse:
        self.calls += 1
        if caller.token not in self.agents:
            raise ServiceCallError(
                Endpoint("ExecutionService", "127.0.0.1:1", "AGENTRUN_EXECUTION_TARGET"),
                "ListAgents",
                grpc.StatusCode.UNAUTHENTICATED,
                "invalid bearer token",
            )
        names = self.agents[caller.token or ""]
        return ex_pb2.ListAgentsResponse(agents=[ex_pb2.Agent(name=name, model="gemini-x") for name in names])


async def test_quick_filter_agent_names_are_never_offered_to_another_person() -> None:
    service = _AgentsByCaller({"alice-token": ["alice-private"], "bob-token": ["bob-private"]})
    names = AgentNames(ttl_s=60, max_callers=2)
    api = cast(ExecutionApi, service)
    assert (await names.get(api, Caller("alice-token"))).agents == ("alice-private",)
    assert (await names.get(api, Caller("bob-token"))).agents == ("bob-private",)
    assert (await names.get(api, Caller("mallory-token"))).agents == ()  # refused: nobody's names
    assert (await names.get(api, Caller("bob-token"))).agents == ("bob-private",)  # kept for bob
    assert service.calls == 3


def test_a_resumed_step_is_shown_with_its_replicas_and_gap() -> None:
    resumed = run_pb2.RunResumed(
        gap=duration_pb2.Duration(seconds=31, nanos=500_000_000), replica="replica-b", previous_replica="replica-a"
    )
    step = _step(6, 40.0, resumed=resumed)
    row = step_row(step, _step(1, 0.0).time)
    assert row.kind == "resumed" and row.summary == "resumed on replica-b after 31.5 s (was replica-a)"
    html = Renderer().fragment("_step_detail.html", step=step, run_id="r-3")
    assert "replica-b" in html and "replica-a" in html and "no view" not in html


def test_a_web_token_from_a_crlf_file_is_stripped_and_a_control_character_refused_without_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before: the CR (or any non-ASCII character) reached gRPC, which failed every call with "Invalid metadata"."""
    monkeypatch.setenv("AGENTRUN_WEB_TOKEN", "single-user-token-0123\r\n")
    token = WebSettings.load().token
    assert token is not None and token.get_secret_value() == "single-user-token-0123"
    monkeypatch.setenv("AGENTRUN_WEB_TOKEN", "single-user\rtoken")
    with pytest.raises(SettingsError) as refused:
        WebSettings.load()
    assert str(refused.value) == (
        "AGENTRUN_WEB_TOKEN holds a control character (U+000D) at character 12; a bearer token is printable ASCII"
    )
