"""ListRuns order_by: parsing, the SQL sort key of each order field, and keyset positions in page tokens.

Nullable sort columns (duration of a running run, unknown cost) sort as -1, i.e. before every known value in
ascending order and after them in descending order; the run id breaks ties in the same direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnClause, ColumnElement, and_, func, literal, literal_column, tuple_

from agentrun_core.echo import shown
from runs_service.errors import InvalidArgument, InvalidPageToken
from runs_service.queries import OrderField, Ordering
from runs_service.storage.rows import to_utc
from runs_service.storage.tables import runs

_ALLOWED_TEXT = "start_time, duration, total_tokens or cost, optionally followed by asc or desc"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_order_by(text: str) -> Ordering:
    """`"duration asc"` -> Ordering(DURATION, descending=False); empty -> start_time desc."""
    words = text.split()
    if not words:
        return Ordering()
    if len(words) > 2:
        raise InvalidArgument("order_by", f"must be one field: {_ALLOWED_TEXT}; got {shown(text)}")
    try:
        field = OrderField(words[0].lower())
    except ValueError:
        raise InvalidArgument("order_by", f"unknown field {shown(words[0])}: use {_ALLOWED_TEXT}") from None
    direction = words[1].lower() if len(words) == 2 else "desc"
    if direction not in ("asc", "desc"):
        raise InvalidArgument("order_by", f"direction must be asc or desc, got {shown(words[1])}")
    return Ordering(field=field, descending=direction == "desc")


def ordering_text(ordering: Ordering) -> str:
    return f"{ordering.field.value} {'desc' if ordering.descending else 'asc'}"


# -1 written into the SQL, not bound: the expression must be the indexes' (tables.py) for the database to use them.
_UNKNOWN: ColumnClause[Any] = literal_column("-1")


def sort_key(field: OrderField) -> ColumnElement[Any]:
    match field:
        case OrderField.START_TIME:
            return runs.c.start_time
        case OrderField.DURATION:
            return func.coalesce(runs.c.duration_us, _UNKNOWN)
        case OrderField.TOTAL_TOKENS:
            return runs.c.total_tokens
        case OrderField.COST:
            return func.coalesce(runs.c.cost, _UNKNOWN)


def order_clauses(ordering: Ordering) -> list[ColumnElement[Any]]:
    key = sort_key(ordering.field)
    if ordering.descending:
        return [key.desc(), runs.c.id.desc()]
    return [key.asc(), runs.c.id.asc()]


def position_of(ordering: Ordering, row: Mapping[Any, Any]) -> dict[str, Any]:
    """The keyset position of a runs row (as a mapping), JSON-ready for a page token."""
    match ordering.field:
        case OrderField.START_TIME:
            value: Any = (to_utc(row["start_time"]) - _EPOCH) // timedelta(microseconds=1)
        case OrderField.DURATION:
            value = -1 if row["duration_us"] is None else int(row["duration_us"])
        case OrderField.TOTAL_TOKENS:
            value = int(row["total_tokens"])
        case OrderField.COST:
            value = "-1" if row["cost"] is None else str(row["cost"])
    return {"v": value, "id": row["id"]}


def _sort_value(ordering: Ordering, raw: Any) -> Any:
    match ordering.field:
        case OrderField.START_TIME:
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise InvalidPageToken("is malformed; start again without it")
            return _EPOCH + timedelta(microseconds=raw)
        case OrderField.DURATION | OrderField.TOTAL_TOKENS:
            if not isinstance(raw, int) or isinstance(raw, bool):
                raise InvalidPageToken("is malformed; start again without it")
            return raw
        case OrderField.COST:
            try:
                return Decimal(str(raw))
            except InvalidOperation:
                raise InvalidPageToken("is malformed; start again without it") from None


def after_position(ordering: Ordering, position: dict[str, Any]) -> ColumnElement[bool]:
    """Rows strictly after `position` in `ordering` (row-value comparison plus an index-friendly bound)."""
    last_id = position.get("id")
    if not isinstance(last_id, str):
        raise InvalidPageToken("is malformed; start again without it")
    key = sort_key(ordering.field)
    value = literal(_sort_value(ordering, position.get("v")), type_=key.type)
    id_value = literal(last_id, type_=runs.c.id.type)
    if ordering.descending:
        return and_(key <= value, tuple_(key, runs.c.id) < tuple_(value, id_value))
    return and_(key >= value, tuple_(key, runs.c.id) > tuple_(value, id_value))
