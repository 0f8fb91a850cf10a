"""plan.decide: which tick a replica claims, given the last one handled, the time and the missed-tick policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from execution_service.schedules.cron import CronTimes
from execution_service.schedules.plan import decide
from execution_service.schedules.spec import MissedTicks

HOURLY = CronTimes("0 * * * *")
T10 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def test_nothing_is_due_before_the_next_tick() -> None:
    assert decide(HOURLY, T10, T10 + timedelta(minutes=59), MissedTicks.SKIP, 60) is None


def test_a_tick_reached_within_the_grace_is_claimed_under_either_policy() -> None:
    for policy in MissedTicks:
        decision = decide(HOURLY, T10, T10 + timedelta(hours=1, seconds=5), policy, 60)
        assert decision is not None
        assert decision.claim == decision.latest == T10 + timedelta(hours=1)
        assert not decision.late and decision.skipped == 0


def test_a_late_tick_runs_once_or_is_skipped_as_the_schedule_says() -> None:
    now = T10 + timedelta(hours=3, minutes=30)  # 11:00, 12:00 and 13:00 passed while nothing ran
    late_once = decide(HOURLY, T10, now, MissedTicks.RUN_LATE_ONCE, 60)
    assert late_once is not None
    assert late_once.claim == T10 + timedelta(hours=3) and late_once.late and late_once.skipped == 2
    skip = decide(HOURLY, T10, now, MissedTicks.SKIP, 60)
    assert skip is not None
    assert skip.claim is None and skip.latest == T10 + timedelta(hours=3) and skip.skipped == 3


def test_missed_ticks_before_an_on_time_tick_are_not_run() -> None:
    every_second = CronTimes("* * * * * *")
    now = T10 + timedelta(seconds=10, milliseconds=200)
    decision = decide(every_second, T10, now, MissedTicks.RUN_LATE_ONCE, 1)
    assert decision is not None
    assert decision.claim == T10 + timedelta(seconds=10) and not decision.late and decision.skipped == 9


def test_cron_in_a_time_zone() -> None:
    paris = CronTimes("0 7 * * *", "Europe/Paris")
    # 07:00 in Paris is 06:00 UTC in winter, 05:00 UTC in summer.
    assert paris.next_after(datetime(2026, 12, 6, tzinfo=UTC)) == datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
    assert paris.next_after(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 1, 5, 0, tzinfo=UTC)
    assert CronTimes("*/15 * * * * *").next_times(T10, 3) == [T10 + timedelta(seconds=s) for s in (15, 30, 45)]
