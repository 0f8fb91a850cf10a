"""What a run id that is not one says: what was expected, and what was given."""

from __future__ import annotations

import pytest

from agentrun_core.ids import new_run_id, run_id_problem


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "must not be empty"),
        (
            "00000000-0000-0000-0000-000000000000",
            "must be a UUIDv7 (version 7, as agentrun makes them), got the nil UUID",
        ),
        (
            "0190b6e2-7c3a-4d4e-9f10-2a3b4c5d6e7f",
            "must be a UUIDv7 (version 7, as agentrun makes them), got a UUID of version 4",
        ),
        (
            "0190b6e2-7c3a-7d4e-1f10-2a3b4c5d6e7f",
            "must be a UUIDv7 (version 7, as agentrun makes them), got a UUID of another variant than RFC 9562's, "
            "which has no version",
        ),
    ],
)
def test_an_id_that_is_no_uuidv7_says_what_it_is(value: str, problem: str) -> None:
    assert run_id_problem(value) == problem


def test_a_new_id_has_no_problem() -> None:
    assert run_id_problem(new_run_id()) is None
