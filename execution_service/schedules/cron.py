"""Cron times of a schedule, in its time zone (croniter): five fields, or six with seconds first (as DBOS and
Quartz write them), or a nickname such as @daily. Times go in and come out as UTC."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from agentrun_core.echo import shown

_ONE_MICROSECOND = timedelta(microseconds=1)


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


class CronTimes:
    """The ticks of one cron expression in one time zone."""

    def __init__(self, expression: str, timezone: str = "UTC") -> None:
        self.expression = expression
        self.zone = zone_named(timezone)
        fields = expression.split()
        nickname = len(fields) == 1 and expression.strip().startswith("@")
        if not nickname and len(fields) not in (5, 6):
            plural = "" if len(fields) == 1 else "s"
            raise CronError(
                f"cron {shown(expression)} has {len(fields)} field{plural}: write five (minute hour day-of-month month "
                'day-of-week, e.g. "0 7 * * 1-5") or six with seconds first (e.g. "*/30 * * * * *")'
            )
        try:
            croniter(expression, datetime.now(self.zone), second_at_beginning=True)
        except (CroniterError, ValueError, KeyError) as exc:
            raise CronError(f"cron {shown(expression)} is not a valid cron expression ({exc})") from None
        try:
            self.next_after(datetime.now(UTC))
        except CroniterBadDateError:
            raise CronError(f"cron {shown(expression)} never fires (no date matches it)") from None

    def _iterator(self, start: datetime) -> croniter:
        return croniter(self.expression, start.astimezone(self.zone), second_at_beginning=True)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment`."""
        return self._iterator(moment).get_next(datetime).astimezone(UTC)

    def latest_at_or_before(self, moment: datetime) -> datetime:
        """The last tick at or before `moment`."""
        return self._iterator(moment + _ONE_MICROSECOND).get_prev(datetime).astimezone(UTC)

    def next_times(self, after: datetime, count: int) -> list[datetime]:
        """The next `count` ticks strictly after `after`."""
        iterator = self._iterator(after)
        return [iterator.get_next(datetime).astimezone(UTC) for _ in range(count)]

    def ticks_between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Ticks in (after, until], oldest first."""
        iterator = self._iterator(after)
        while (tick := iterator.get_next(datetime).astimezone(UTC)) <= until:
            yield tick


def zone_named(name: str) -> ZoneInfo:
    """The IANA time zone `name`; CronError when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f"time zone {shown(name)} is unknown: use an IANA name such as UTC, Europe/Paris or America/New_York"
        ) from None
