"""Fixtures shared by the end-to-end tests that run in both execution modes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.replicas import execution_database


@pytest.fixture(params=["embedded", pytest.param("durable", marks=pytest.mark.postgres)])
def mode(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The execution service's settings for each mode: embedded (the default), and durable (DBOS on a fresh
    PostgreSQL database; one replica, in this process)."""
    if request.param == "embedded":
        yield {}
        return
    with execution_database() as url:
        yield {"execution_database_url": url, "replica_id": "e2e-replica"}
