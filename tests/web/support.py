"""The web console against the real services, for HTTP and browser tests.

`WebStack` runs, in a background thread with its own event loop: a real RunsService and ExecutionService with
authentication on (tests.support.auth tokens: alice, bob, admin, the service), the fake Gemini REST API scripted by
the task's first word (SCENARIOS), real MCP servers, and the console (uvicorn on 127.0.0.1:0, people sign in with
their tokens). Tests talk to it over HTTP (httpx, Playwright's Chromium) and, to check what the pages say against
the API, through `call()` which runs a coroutine on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from agentrun.execution.v1 import execution_service_pb2 as ex
from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as rs

from agentrun_web.server import RunningConsole, start_console
from agentrun_web.settings import WebAuth, WebSettings
from tests.fakes.gemini_server import FakeFunctionCall, FakeResponse, FakeUsage
from tests.support.auth import ADMIN, SERVICE, token_auth
from tests.support.stack import Stack, agent_source, running_stack

T = TypeVar("T")
CHROMIUM_ENV = "AGENTRUN_TEST_CHROMIUM"
SCREENSHOTS_ENV = "AGENTRUN_WEB_SCREENSHOTS"
DEFAULT_CHROMIUM = "/usr/bin/chromium"


def find_chromium() -> tuple[str | None, str]:
    """(path, description) of the Chromium to drive, or (None, why there is none)."""
    configured = os.environ.get(CHROMIUM_ENV)
    candidates = [configured] if configured else [DEFAULT_CHROMIUM, shutil.which("chromium") or ""]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate, candidate
    tried = configured or DEFAULT_CHROMIUM
    return None, (
        f"no Chromium at {tried} (install Debian's: apt-get install -y chromium, or set {CHROMIUM_ENV}); "
        "`playwright install` is never used"
    )


def usage(prompt: int, candidates: int, *, cached: int = 0, thoughts: int = 0, tool_use: int = 0) -> FakeUsage:
    return FakeUsage(prompt=prompt, candidates=candidates, cached=cached, thoughts=thoughts, tool_use_prompt=tool_use)


def call(name: str, call_id: str, **args: Any) -> FakeFunctionCall:
    return FakeFunctionCall(name, args, id=call_id)


# The scripted agent's model turns, chosen by the task's first word ("waterfall: ...").
SCENARIOS: dict[str, list[FakeResponse]] = {
    # Parallel calls (echo beside a sleep), then a failing, a secret-revealing and an oversized result.
    "waterfall": [
        FakeResponse(
            text="Let me check.",
            function_calls=[call("echo", "c1", text="hello"), call("sleep", "c2", seconds=0.3)],
            usage=usage(1200, 40, cached=300, thoughts=25, tool_use=7),
            stream_chunks=2,
            chunk_delay_s=0.05,
            delay_s=0.05,
        ),
        FakeResponse(
            function_calls=[
                call("fail", "c3", message="boom"),
                call("secret_config", "c4"),
                call("big", "c5", size=5000),
            ],
            usage=usage(1600, 60, cached=900, thoughts=12),
            delay_s=0.05,
        ),
        FakeResponse(text="All done.", usage=usage(2100, 20, cached=1500), stream_chunks=2, chunk_delay_s=0.05),
    ],
    # A run that takes about two seconds: steps arrive one by one.
    "slow": [
        FakeResponse(
            function_calls=[call("echo", "s1", text="one"), call("sleep", "s2", seconds=0.6)],
            usage=usage(300, 20),
            delay_s=0.8,
        ),
        FakeResponse(function_calls=[call("echo", "s3", text="two")], usage=usage(400, 20), delay_s=0.5),
        FakeResponse(text="Slow and steady.", usage=usage(500, 10), delay_s=0.5),
    ],
    # A first turn whose tool call lasts long enough for a person (or a loaded test machine) to press a button
    # before the turn ends, then a second turn that must never start when the run was cancelled after the first.
    "turn": [
        FakeResponse(
            function_calls=[call("echo", "t1", text="one"), call("sleep", "t2", seconds=4)], usage=usage(300, 20)
        ),
        FakeResponse(function_calls=[call("echo", "t3", text="two")], usage=usage(400, 20)),
        FakeResponse(text="too far", usage=usage(500, 10)),
    ],
    # The lead agent hands a slow task to the scripted agent as a sub-agent, then works on for a while.
    "delegate": [
        FakeResponse(function_calls=[call("scripted", "d1", task="slow: the child's part")], usage=usage(200, 10)),
        FakeResponse(function_calls=[call("sleep", "d2", seconds=2.5)], usage=usage(300, 10)),
        FakeResponse(text="Delegated and done.", usage=usage(400, 10)),
    ],
    # A run that waits in a long tool call until someone cancels it.
    "cancel": [
        FakeResponse(function_calls=[call("sleep", "w1", seconds=30)], usage=usage(100, 10)),
        FakeResponse(text="never reached", usage=usage(100, 10)),
    ],
}


def scripted_turn(body: dict[str, Any]) -> FakeResponse:
    contents = body.get("contents") or []
    first_text = next((part.get("text", "") for part in (contents[0].get("parts") or []) if "text" in part), "")
    scenario = SCENARIOS.get(first_text.split(":", 1)[0].strip(), SCENARIOS["waterfall"])
    turn = sum(1 for content in contents if content.get("role") == "model")
    return scenario[min(turn, len(scenario) - 1)]


AGENTS = {
    "scripted": agent_source(
        model="gemini-2.5-flash", tools=["test/echo", "test/sleep", "test/fail", "test/secret_config", "test/big"]
    ),
    "quick": agent_source(tools=["test/echo", "test/add"]),
    # Calls quick as a sub-agent (TestModel calls each tool once): a run with a child run.
    "team": agent_source(tools=["agents/quick"]),
    # Hands the scripted agent a slow task ("delegate" scenario): a child run that takes a while.
    "lead": agent_source(model="gemini-2.5-flash", tools=["agents/scripted", "test/sleep"]),
    "withvars": agent_source(
        extra_front_matter="description: Greets a city\ninput:\n  schema:\n    city: string, where\n    days?: integer",
        body='{{role "system"}}\nYou greet {{city}}.\n{{role "user"}}\n{{task}}',
    ),
}
# An agent file that fails to load (the start page lists it with its problem).
BROKEN_AGENT = "---\nmodel: test\nlimits: {max_steps: lots}\n---\nhi\n"


class BackgroundLoop:
    """An event loop in a daemon thread; `run` waits for a coroutine scheduled on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="web-stack-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@dataclass
class WebStack:
    loop: BackgroundLoop
    stack: Stack
    console: RunningConsole
    exits: AsyncExitStack

    @property
    def url(self) -> str:
        return self.console.url.rstrip("/")

    def call(self, make: Callable[[], Awaitable[T]], timeout: float = 60.0) -> T:
        async def run() -> T:
            return await make()

        return self.loop.run(run(), timeout)

    def get_run(self, run_id: str, token: str = ADMIN) -> run_pb2.Run:
        request = rs.GetRunRequest(run_id=run_id, view=rs.RUN_VIEW_FULL)
        return self.call(lambda: self.stack.runs_stub(token).GetRun(request)).run

    def list_runs(self, token: str, filter_text: str = "") -> rs.ListRunsResponse:
        request = rs.ListRunsRequest(filter=filter_text, page_size=100)
        return self.call(lambda: self.stack.runs_stub(token).ListRuns(request))

    def start(self, token: str, agent: str, task: str, **request: Any) -> str:
        """Starts a run detached (as the console does); returns its id once it has started (or was queued)."""

        async def run() -> str:
            stream = self.stack.execution_stub(token).ExecuteAgent(
                ex.ExecuteAgentRequest(agent_name=agent, task=task, detach=True, **request)
            )
            async for event in stream:
                if event.WhichOneof("event") == "run_started":
                    stream.cancel()
                    return str(event.run_started.run_id)
                if event.WhichOneof("event") == "run_queued":
                    stream.cancel()
                    return str(event.run_queued.run_id)
            raise AssertionError("the run did not start")

        return self.loop.run(run())

    def execute(self, token: str, agent: str, task: str) -> run_pb2.Run:
        """Runs to the end and returns the stored run."""
        events = self.call(lambda: self.stack.execute(token, agent_name=agent, task=task))
        finished = events[-1].run_finished
        assert finished.run_id, events[-1]
        return self.call(lambda: self.stack.stored_run(finished.run_id))

    def wait_stored(self, run_id: str, timeout_s: float = 20.0) -> run_pb2.Run:
        """The run once RunsService has its terminal record."""
        return self.call(lambda: self.stack.stored_run(run_id, timeout_s=timeout_s), timeout=timeout_s + 10)

    def record(self, run: run_pb2.Run) -> None:
        request = rs.RecordRunRequest(run=run)
        self.call(lambda: self.stack.runs_stub(SERVICE).RecordRun(request))


async def _open(
    tmp: Path, console_overrides: dict[str, Any], execution_overrides: dict[str, Any]
) -> tuple[Stack, RunningConsole, AsyncExitStack]:
    exits = AsyncExitStack()
    auth = token_auth(tmp / "tokens.jsonl")
    stack = await exits.enter_async_context(
        running_stack(
            tmp,
            AGENTS,
            runs_auth=auth,
            auth=auth,
            runs_service_token=SERVICE,
            reader_token=ADMIN,
            max_tool_result_bytes=2000,
            **execution_overrides,
        )
    )
    (tmp / "agents" / "broken.prompt").write_text(BROKEN_AGENT)
    stack.gemini.set_responder(scripted_turn)
    settings = WebSettings(
        address="127.0.0.1:0",
        runs_target=stack.runs_address,
        execution_target=stack.execution_address,
        auth=WebAuth.TOKENS,
        refresh_s=0.5,
        log_format="text",
        **console_overrides,
    )
    console = await start_console(settings)
    exits.push_async_callback(console.stop)
    return stack, console, exits


@contextlib.contextmanager
def web_stack(tmp: Path, execution: dict[str, Any] | None = None, **console_overrides: Any) -> Iterator[WebStack]:
    """`execution`: ExecutionSettings overrides (e.g. max_concurrent_runs)."""
    loop = BackgroundLoop()
    try:
        stack, console, exits = loop.run(_open(tmp, console_overrides, execution or {}))
        try:
            yield WebStack(loop, stack, console, exits)
        finally:
            loop.run(exits.aclose(), timeout=60)
    finally:
        loop.close()


@contextlib.contextmanager
def console_only(settings: WebSettings) -> Iterator[RunningConsole]:
    """A console alone (for services that are down, other settings), on its own loop."""
    loop = BackgroundLoop()
    try:
        console = loop.run(start_console(settings))
        try:
            yield console
        finally:
            loop.run(console.stop())
    finally:
        loop.close()


def sign_in_at(browser: Any, url: str, token: str) -> Any:
    """A browser context signed in to the console at `url` through its login page with `token`."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.goto(url + "/")
    assert page.url.startswith(url + "/login"), page.url
    page.fill('input[name="token"]', token)
    page.click('button[type="submit"]')
    page.wait_for_url(url + "/")
    page.close()
    return context
