"""Recording runs (RecordRun, RecordRuns): every record checked by the rules of a valid run
(runs_service.validation.validate_rows), each run its own outcome, the valid ones written in one idempotent batch.

The servicer only translates: it hands over, for each record of a request, either the rows built from it
(runs_service.api.run_rows) or the InvalidArgument that kept them from being built, and turns the outcomes back
into protobuf. Outcomes come back in the order of the records.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from agentrun_core.contract import RECORD_RUNS_MAX_RUNS
from runs_service.errors import InvalidArgument
from runs_service.queries import RecordResult
from runs_service.storage.repository import RunRepository
from runs_service.storage.rows import RunRows
from runs_service.validation import validate_rows

log = logging.getLogger(__name__)

# A record as the servicer translated it: its rows, or why they could not be built.
Translated = RunRows | InvalidArgument


def check_batch_size(count: int) -> None:
    """InvalidArgument when one RecordRuns call carries more runs than RECORD_RUNS_MAX_RUNS (checked before any
    record is translated)."""
    if count > RECORD_RUNS_MAX_RUNS:
        raise InvalidArgument("requests", f"at most {RECORD_RUNS_MAX_RUNS} runs per call, got {count}")


async def record_run(repository: RunRepository, rows: RunRows) -> RecordResult:
    """One run: InvalidArgument naming the field when it breaks a rule, else its idempotent upsert's outcome."""
    validate_rows(rows)
    return await repository.record_rows(rows)


async def record_runs(repository: RunRepository, records: Sequence[Translated]) -> list[RecordResult]:
    """Several runs, each with its own outcome in order: REJECTED (with the field and the problem) for a record that
    could not be translated or breaks a rule, the upsert's outcome for the others (written together)."""
    check_batch_size(len(records))
    results: list[RecordResult | None] = [None] * len(records)
    valid: list[RunRows] = []
    positions: list[int] = []
    for index, record in enumerate(records):
        problem = record if isinstance(record, InvalidArgument) else _problem_of(record)
        if problem is not None:
            results[index] = RecordResult.rejected(problem.reason, problem.field, problem.message)
        elif isinstance(record, RunRows):
            valid.append(record)
            positions.append(index)
    rejected = len(records) - len(valid)
    if rejected:
        log.info("RecordRuns rejected invalid runs", extra={"rejected": rejected, "runs": len(records)})
    for index, result in zip(positions, await repository.record_batch(valid), strict=True):
        results[index] = result
    return [result for result in results if result is not None]


def _problem_of(rows: RunRows) -> InvalidArgument | None:
    try:
        validate_rows(rows)
    except InvalidArgument as exc:
        return exc
    return None
