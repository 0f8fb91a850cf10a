"""Parsing option values: `key=value` pairs and time ranges."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentrun_core.periods import parse_period

DEFAULT_SINCE = "7d"


class ParamError(ValueError):
    """An option value is malformed; the message says which and how."""


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """["k=v", "a=b=c"] -> {"k": "v", "a": "b=c"}."""
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamError(f"{option} expects KEY=VALUE, got {item!r}")
        pairs[key.strip()] = value
    return pairs


def parse_since(value: str) -> timedelta:
    """`90s`, `15m`, `12h`, `7d`, `2w` (agentrun_core.periods)."""
    try:
        period = parse_period(value)
    except ValueError as exc:
        raise ParamError(f"--since {exc}, got {value!r}") from None
    if period <= timedelta(0):
        raise ParamError(f"--since must be longer than 0 (e.g. 90m, 12h, 7d), got {value!r}")
    return period


def parse_time(value: str, option: str) -> datetime:
    """ISO 8601 (`2026-11-01`, `2026-11-01T12:00:00Z`, with an offset or not: naive means UTC)."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise ParamError(f"{option} expects an ISO 8601 time such as 2026-11-01T12:00:00Z, got {value!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def time_range(
    since: str | None, start: str | None, end: str | None, *, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[start, end) from --since, or from --from/--to (--to defaults to now); --since 7d when none is given."""
    current = now or datetime.now(UTC)
    if since is not None and (start is not None or end is not None):
        raise ParamError("use either --since or --from/--to, not both")
    if start is None and end is None:
        return current - parse_since(since or DEFAULT_SINCE), current
    if start is None:
        raise ParamError("--to needs --from")
    begin = parse_time(start, "--from")
    finish = parse_time(end, "--to") if end is not None else current
    if finish <= begin:
        raise ParamError("--to must be after --from")
    return begin, finish
