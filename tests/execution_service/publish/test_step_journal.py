"""The live-steps journal on its own: frames round-trip, names are safe, a failing disk never fails a run."""

from __future__ import annotations

import logging
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from agentrun_core.domain import ExecutionStep, FinalResponse, ModelAttempt, ModelCall, TokenUsage
from execution_service.publish.step_journal import SUFFIX, StepJournal, journal_directory
from tests.execution_service.publish.conftest import T0


def _step(run_id: str, sequence: int, text: str = "hi") -> ExecutionStep:
    attempt = ModelAttempt(1, "MODEL_RATE_LIMITED", "429", T0, timedelta(seconds=1), 429, "RESOURCE_EXHAUSTED")
    payload = ModelCall(model="m", usage=TokenUsage(1, 2, 3), text=text, failed_attempts=(attempt,), thoughts="t")
    return ExecutionStep(run_id, sequence, T0 + timedelta(seconds=sequence), payload, timedelta(seconds=2))


def test_steps_round_trip_in_order(tmp_path: Path) -> None:
    journal = StepJournal(tmp_path)
    steps = [_step("r1", 1), _step("r1", 2, "x" * 100_000), ExecutionStep("r1", 3, T0, FinalResponse("done"))]
    for step in steps:
        journal.append(step)
    journal.append(_step("r2", 1))
    assert journal.read("r1") == steps
    assert journal.read("r2") == [_step("r2", 1)]
    assert journal.read("never-started") == []
    journal.forget("r1")
    assert journal.read("r1") == [] and not journal.path("r1").exists()


def test_a_run_id_that_is_no_safe_file_name_is_hashed(tmp_path: Path) -> None:
    journal = StepJournal(tmp_path / "j")
    odd = "../../etc/passwd"
    journal.append(_step(odd, 1))
    [file] = list((tmp_path / "j").iterdir())
    assert file.parent == tmp_path / "j" and file.name.endswith(SUFFIX) and len(file.name) == 64 + len(SUFFIX)
    assert journal.read(odd) == [_step(odd, 1)]


def test_a_journal_that_cannot_be_written_never_fails_the_run(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = StepJournal(tmp_path / "j")
    shutil.rmtree(tmp_path / "j")  # e.g. the data directory was removed under the running service
    with caplog.at_level(logging.ERROR, logger="execution_service.publish.step_journal"):
        journal.append(_step("r1", 1))
        journal.append(_step("r1", 2))
    errors = [r for r in caplog.records if "cannot journal" in r.getMessage()]
    assert len(errors) == 1 and errors[0].run_id == "r1"  # type: ignore[attr-defined]


def test_a_damaged_frame_ends_the_read(tmp_path: Path) -> None:
    journal = StepJournal(tmp_path)
    journal.append(_step("r1", 1))
    journal.append(_step("r1", 2))
    data = bytearray(journal.path("r1").read_bytes())
    data[-3] ^= 0xFF  # a flipped byte in the second frame's payload: its CRC no longer matches
    journal.path("r1").write_bytes(bytes(data))
    assert journal.read("r1") == [_step("r1", 1)]


def test_the_directory_sits_beside_the_outbox(tmp_path: Path) -> None:
    assert journal_directory(tmp_path / "data" / "outbox.db") == tmp_path / "data" / "outbox.live-steps"
