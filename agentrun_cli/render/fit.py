"""Column widths for tables that must fit the terminal: short columns (numbers, status, cost) keep their width, long
text columns share what is left and are cut first, the widest before the others."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def table_width(widths: Mapping[str, int], gap: int) -> int:
    return sum(widths.values()) + gap * (len(widths) - 1)


def fit_widths(
    widths: Mapping[str, int], flexible: Sequence[str], floors: Mapping[str, int], max_width: int, gap: int
) -> dict[str, int]:
    """`widths` with the `flexible` columns narrowed until the table fits in `max_width` (never below their
    `floors`): they share what the other columns leave max-min fairly (a column narrower than its share keeps its
    width, the rest is split among the wider ones), so the longest text is cut first."""
    fitted = dict(widths)
    budget = max_width - table_width(widths, gap) + sum(widths[name] for name in flexible)
    ordered = sorted(flexible, key=lambda name: widths[name])
    for index, name in enumerate(ordered):
        fitted[name] = max(min(widths[name], budget // (len(ordered) - index)), floors[name])
        budget -= fitted[name]
    return fitted
