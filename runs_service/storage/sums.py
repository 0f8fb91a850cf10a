"""Token sums over stored runs, as the 64-bit counts the API carries.

SQLite stops a sum that leaves 64 bits with "integer overflow"; PostgreSQL sums bigints as numeric and returns it.
Either way the result cannot be sent: both become SumOutOfRange (records accepted before RecordRun bounded token
counts can hold such values)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc

from agentrun_core.domain import TokenUsage
from runs_service.errors import SumOutOfRange
from runs_service.storage.tables import TOKEN_COLUMNS

INT64_MAX = 2**63 - 1


def out_of_range(operation: str) -> SumOutOfRange:
    return SumOutOfRange(
        f"{operation}: a token sum over the matching runs exceeds the 64-bit range (some runs were recorded with "
        "absurd token counts); narrow the filter, or find those runs (e.g. total_tokens > 1000000000000) and "
        "delete them"
    )


def is_sqlite_overflow(error: BaseException) -> bool:
    return isinstance(error, sa_exc.OperationalError) and "integer overflow" in str(error.orig).lower()


def summed_token_usage(row: Any, operation: str) -> TokenUsage:
    """The TokenUsage of a row holding one sum per token column (NULL: no runs)."""
    sums = {name: int(getattr(row, name) or 0) for name in TOKEN_COLUMNS}
    if any(value > INT64_MAX for value in sums.values()):
        raise out_of_range(operation)
    return TokenUsage(**sums)
