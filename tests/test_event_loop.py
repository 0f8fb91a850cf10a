"""agentrun_core.event_loop: which loop the services run on, and what an operator can choose."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from agentrun_core import event_loop
from agentrun_core.settings import SettingsError


@pytest.fixture(autouse=True)
def _grpc_fork_handlers_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "false")  # as the agentrun packages set it


async def _loop_type() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(
    ("choice", "module"), [("auto", "uvloop"), ("", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio.unix_events")]
)
def test_the_choice_picks_the_loop(choice: str, module: str) -> None:
    assert event_loop.run(_loop_type(), choice) == module


def test_the_environment_variable_is_the_default_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(event_loop.ENV_VAR, "asyncio")
    assert event_loop.loop_factory() is None
    monkeypatch.setenv(event_loop.ENV_VAR, "UVLOOP ")
    assert event_loop.loop_factory() is uvloop.new_event_loop


def test_an_unknown_choice_is_refused_naming_the_variable() -> None:
    coroutine = _loop_type()
    with pytest.raises(SettingsError, match="AGENTRUN_EVENT_LOOP must be one of auto, uvloop, asyncio, got 'trio'"):
        event_loop.run(coroutine, "trio")


def test_uvloop_required_but_missing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    with pytest.raises(SettingsError, match="uvloop is not installed"):
        event_loop.loop_factory("uvloop")
    assert event_loop.loop_factory("auto") is None  # auto falls back to asyncio's loop


def test_uvloop_is_not_used_while_grpc_fork_handlers_are_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """With them on, a fork() by uvloop sometimes breaks the stdio MCP server it starts (measured 1 start in 4)."""
    monkeypatch.setenv("GRPC_ENABLE_FORK_SUPPORT", "true")
    assert event_loop.loop_factory("auto") is None
    assert "running on asyncio's event loop: uvloop needs gRPC's fork handlers off" in caplog.text
    with pytest.raises(SettingsError, match="AGENTRUN_EVENT_LOOP=uvloop: uvloop needs gRPC's fork handlers off"):
        event_loop.loop_factory("uvloop")
