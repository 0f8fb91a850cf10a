"""Cost sums over stored runs, one per currency: amounts in different currencies are never added together.

A group (of GetRunStats, or a session of ListSessions) gets one Cost per currency its priced runs used; its single
`cost` is that sum when there is exactly one currency, and None (unknown as one figure) when there are several.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agentrun_core.domain import Cost
from runs_service.storage.tables import runs

# A stored run's currency; empty (rows from before the "USD" default was applied on input) reads as USD.
_CURRENCY = func.coalesce(func.nullif(runs.c.cost_currency, ""), "USD")


@dataclass(frozen=True, slots=True)
class GroupCosts:
    """A group's known costs: `by_currency` one sum per currency (ordered by code), `single` the one sum when the
    group's priced runs share one currency (None when none has a cost or they used several currencies)."""

    by_currency: tuple[Cost, ...] = ()

    @property
    def single(self) -> Cost | None:
        return self.by_currency[0] if len(self.by_currency) == 1 else None


def price_table(low: str | None, high: str | None) -> str:
    """The price table of summed costs: "A .. B" when they came from several (their lowest and highest)."""
    if not low or not high:
        return low or high or ""
    return low if low == high else f"{low} .. {high}"


def single_currency_columns() -> list[Any]:
    """Columns to add to a grouped aggregate: each group's cost sum, the lowest and highest currency of its priced
    runs, and its price tables (labelled min_/max_: stats._histogram_rows merges them with min/max). A group whose
    two currencies are equal has one, and its GroupCosts come from the row itself (`costs_from_row`): the
    per-currency query (`costs_by_currency`) is needed only for groups that mix currencies."""
    priced_currency = case((runs.c.cost.is_not(None), _CURRENCY))
    return [
        func.sum(runs.c.cost).label("cost_amount"),
        func.min(priced_currency).label("min_cost_currency"),
        func.max(priced_currency).label("max_cost_currency"),
        func.min(runs.c.price_table_version).label("min_cost_price_table"),
        func.max(runs.c.price_table_version).label("max_cost_price_table"),
    ]


def mixes_currencies(row: Any) -> bool:
    """Whether a row with `single_currency_columns` is a group whose priced runs use several currencies."""
    return row.min_cost_currency is not None and row.min_cost_currency != row.max_cost_currency


def costs_from_row(row: Any) -> GroupCosts:
    """The costs of a group priced in at most one currency, from its `single_currency_columns`."""
    if row.min_cost_currency is None or row.cost_amount is None:
        return GroupCosts()
    table = price_table(row.min_cost_price_table, row.max_cost_price_table)
    return GroupCosts(
        (Cost(amount=Decimal(row.cost_amount), currency_code=row.min_cost_currency, price_table_version=table),)
    )


async def costs_by_currency(
    conn: AsyncConnection,
    keys: Sequence[ColumnElement[Any]],
    conditions: Sequence[ColumnElement[bool]],
) -> dict[tuple[Any, ...], GroupCosts]:
    """Per group `keys` (a tuple of their values): the costs of runs matching `conditions`, summed per currency.
    Groups without a priced run are absent (their costs are unknown, not zero)."""
    currency = _CURRENCY.label("currency")
    stmt = (
        select(
            *keys,
            currency,
            func.sum(runs.c.cost).label("amount"),
            func.min(runs.c.price_table_version).label("min_price_table"),
            func.max(runs.c.price_table_version).label("max_price_table"),
        )
        .where(*conditions, runs.c.cost.is_not(None))
        .group_by(*keys, currency)
        .order_by(*keys, currency)
    )
    found: dict[tuple[Any, ...], list[Cost]] = defaultdict(list)
    for row in await conn.execute(stmt):
        key = tuple(row[: len(keys)])
        found[key].append(
            Cost(
                amount=Decimal(row.amount),
                currency_code=row.currency,
                price_table_version=price_table(row.min_price_table, row.max_price_table),
            )
        )
    return {key: GroupCosts(tuple(costs)) for key, costs in found.items()}
