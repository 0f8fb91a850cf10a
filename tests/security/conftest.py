"""Fixtures of the security tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.security.fuzz_support import LoopThread, running_fuzz_stack
from tests.support.stack import Stack


@pytest.fixture(scope="module")
def fuzz_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LoopThread, Stack]]:
    """One stack per test module, shared by its Hypothesis tests (see tests.security.fuzz_support)."""
    yield from running_fuzz_stack(tmp_path_factory)
