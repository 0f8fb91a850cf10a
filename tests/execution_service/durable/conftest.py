"""Fixtures of the durable-mode tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.replicas import execution_database


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the execution service (dropped after), or the test is skipped with the reason."""
    with execution_database() as url:
        yield url
