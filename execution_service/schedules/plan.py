"""What a replica does when it looks at a schedule: which tick (if any) to claim, given the last tick it handled.

A tick is on time when it is the latest tick passed and at most `grace_s` old; every other tick that passed since
the cursor was missed (no replica ran, RunsService was unreachable, the schedule was just resumed...). The latest
passed tick is claimed when on time; when it is late, only a RUN_LATE_ONCE schedule claims it (one late run for
however many ticks were missed), a SKIP schedule lets it go. Either way the earlier missed ticks start nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from execution_service.schedules.cron import CronTimes
from execution_service.schedules.spec import MissedTicks

# Ticks skipped are counted up to this many (for the log line), not further: an every-second schedule down for a
# day would otherwise iterate 86,400 ticks.
MAX_COUNTED_SKIPS = 1000


@dataclass(frozen=True, slots=True)
class TickDecision:
    # The tick to claim; None: none (the latest was missed and the schedule skips missed ticks).
    claim: datetime | None
    # The latest tick passed: the cursor once this decision is carried out.
    latest: datetime
    late: bool
    # Ticks passed over without a run (at most MAX_COUNTED_SKIPS).
    skipped: int


def decide(
    times: CronTimes, cursor: datetime, now: datetime, missed: MissedTicks, grace_s: float
) -> TickDecision | None:
    """None when no tick passed after `cursor`."""
    latest = times.latest_at_or_before(now)
    if latest <= cursor:
        return None
    earlier = 0
    for tick in times.ticks_between(cursor, latest):
        if tick >= latest or earlier >= MAX_COUNTED_SKIPS:
            break
        earlier += 1
    late = (now - latest).total_seconds() > grace_s
    if not late or missed is MissedTicks.RUN_LATE_ONCE:
        return TickDecision(claim=latest, latest=latest, late=late, skipped=earlier)
    return TickDecision(claim=None, latest=latest, late=True, skipped=min(earlier + 1, MAX_COUNTED_SKIPS))
