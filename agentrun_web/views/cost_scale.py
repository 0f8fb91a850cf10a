"""Costs on the stats page: amounts always with their own currency, never added or compared across currencies.

GetRunStats sums costs per currency (`RunStatsGroup.cost_by_currency`; `cost` is unset when a group's runs mix
currencies). So:

- per day, one cost chart per currency (the currency priced on most days first), each on its own scale; a day
  without a priced run says "no priced run" (its cost is unknown, not zero), a day priced only in other currencies
  says "no run priced in EUR";
- per agent, model and user, bars compare the costs of one currency, the one of most runs among the groups priced
  in a single currency; a group priced in another currency, or in several, shows its cost as text without a bar.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from agentrun.runs.v1 import run_pb2
from agentrun.runs.v1 import runs_service_pb2 as runs_pb2

from agentrun_web.views.charts import Column, ColumnChart

NO_PRICED_RUN = "no priced run"


@dataclass(frozen=True, slots=True)
class Amount:
    value: Decimal
    text: str  # as the service wrote it, with its currency: `1.5 USD`


def _amount(cost: run_pb2.Cost) -> Amount | None:
    try:
        value = Decimal(cost.amount)
    except InvalidOperation:
        return None
    if not value.is_finite() or not value:
        return None
    return Amount(value, f"{cost.amount} {cost.currency_code or 'USD'}")


def amounts(group: runs_pb2.RunStatsGroup) -> dict[str, Amount]:
    """The group's cost per currency code (empty when none of its runs was priced)."""
    costs = list(group.cost_by_currency) or ([group.cost] if group.HasField("cost") else [])
    found: dict[str, Amount] = {}
    for cost in costs:
        amount = _amount(cost)
        if amount is not None:
            found[cost.currency_code or "USD"] = amount
    return found


def cost_charts(days: Sequence[runs_pb2.RunStatsGroup], labels: Sequence[str]) -> list[ColumnChart]:
    """One column chart per currency ("cost (EUR)"), or one "cost" chart saying that no day had a priced run."""
    per_day = [amounts(day) for day in days]
    priced_days = Counter(code for day in per_day for code in day)
    if not priced_days:
        columns = [Column(label, 0.0, f"{label}: {NO_PRICED_RUN}", value=NO_PRICED_RUN) for label in labels]
        return [ColumnChart("cost", columns, "none")]
    currencies = sorted(priced_days, key=lambda code: (-priced_days[code], code))
    return [_currency_chart(code, per_day, labels) for code in currencies]


def _currency_chart(code: str, per_day: Sequence[dict[str, Amount]], labels: Sequence[str]) -> ColumnChart:
    peak = max((day[code] for day in per_day if code in day), key=lambda amount: amount.value)
    columns = []
    for label, day in zip(labels, per_day, strict=True):
        amount = day.get(code)
        if amount is None:
            text = f"no run priced in {code}" if day else NO_PRICED_RUN
            columns.append(Column(label, 0.0, f"{label}: {text}", value=text))
        else:
            columns.append(
                Column(label, float(amount.value / peak.value), f"{label}: {amount.text}", value=amount.text)
            )
    return ColumnChart(f"cost ({code})", columns, peak.text)


@dataclass(frozen=True, slots=True)
class CostBar:
    # 0..1 of the largest cost in the table's bar currency, or None: no bar (text only, `note` says why).
    share: float | None
    note: str = ""


def cost_bars(groups: Sequence[runs_pb2.RunStatsGroup]) -> tuple[str, list[CostBar]]:
    """(the currency drawn as bars, each group's bar): bars compare amounts of that one currency only."""
    single = [(group, amounts(group)) for group in groups]
    runs_per_currency: Counter[str] = Counter()
    for group, found in single:
        if len(found) == 1:
            runs_per_currency[next(iter(found))] += group.run_count
    if not runs_per_currency:
        return "", [CostBar(None, _why_no_bar(found, "")) for _, found in single]
    currency = min(runs_per_currency, key=lambda code: (-runs_per_currency[code], code))
    peak = max(found[currency].value for _, found in single if list(found) == [currency])
    bars = [
        CostBar(float(found[currency].value / peak))
        if list(found) == [currency]
        else CostBar(None, _why_no_bar(found, currency))
        for _, found in single
    ]
    return currency, bars


def _why_no_bar(found: dict[str, Amount], currency: str) -> str:
    if not found:
        return NO_PRICED_RUN
    priced = f"priced in {len(found)} currencies" if len(found) > 1 else f"priced in {next(iter(found))}"
    return f"{priced}: no bar (bars compare {currency} costs only)" if currency else f"{priced}: no bar"
