"""A chore failing pass after pass logs its traceback once, then a line every 30 s, then that it works again."""

from __future__ import annotations

import logging

import pytest

from agentrun_core.failure_streak import FailureStreak

LOGGER = "tests.failure_streak"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def streak(clock: Clock) -> FailureStreak:
    return FailureStreak(
        logging.getLogger(LOGGER), "the heartbeat", "heartbeat failed; trying again next interval", clock=clock
    )


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    found = [r for r in caplog.records if r.name == LOGGER]
    caplog.clear()
    return found


def down() -> ConnectionError:
    return ConnectionError("connection refused\nIs the server running?")


def test_a_database_down_for_a_minute_logs_one_traceback_two_reminders_and_the_recovery(
    streak: FailureStreak, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    streak.failed(down())
    (first,) = records(caplog)
    assert first.levelno == logging.ERROR
    assert first.getMessage() == "heartbeat failed; trying again next interval"
    assert first.exc_info is not None and isinstance(first.exc_info[1], ConnectionError)

    for _ in range(29):  # one pass a second: nothing more until 30 s after the last line
        clock.now += 1
        streak.failed(down())
    assert records(caplog) == []
    clock.now += 1
    streak.failed(down())
    (reminder,) = records(caplog)
    assert reminder.levelno == logging.ERROR and reminder.exc_info is None
    assert reminder.getMessage() == (
        "heartbeat failed; trying again next interval (still failing: 31 passes over 30 s; last: ConnectionError: "
        "connection refused)"
    )
    for _ in range(30):
        clock.now += 1
        streak.failed(down())
    assert [r.getMessage() for r in records(caplog)] == [
        "heartbeat failed; trying again next interval (still failing: 61 passes over 60 s; last: ConnectionError: "
        "connection refused)"
    ]
    clock.now += 0.5
    streak.succeeded()
    (recovered,) = records(caplog)
    assert recovered.levelno == logging.INFO
    assert recovered.getMessage() == "the heartbeat works again after 61 failed passes over 60.5 s"
    assert not streak.failing


def test_another_failure_in_a_streak_gets_its_own_traceback(
    streak: FailureStreak, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    streak.failed(down())
    clock.now += 1
    streak.failed(PermissionError("password authentication failed"))
    clock.now += 1
    streak.failed(down())
    logged = records(caplog)
    assert [r.exc_info[1].__class__ if r.exc_info else None for r in logged] == [
        ConnectionError,
        PermissionError,
        ConnectionError,
    ]
    assert getattr(logged[1], "failed_passes", None) == 2


def test_a_failure_after_a_recovery_starts_a_new_streak_with_its_traceback(
    streak: FailureStreak, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    streak.succeeded()  # working all along: nothing to say
    assert records(caplog) == []
    streak.failed(down())
    streak.succeeded()
    clock.now += 3600
    streak.failed(down())
    logged = records(caplog)
    assert [(r.levelno, r.exc_info is not None) for r in logged] == [
        (logging.ERROR, True),
        (logging.INFO, False),
        (logging.ERROR, True),
    ]
