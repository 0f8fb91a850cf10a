"""Limits of the RunsService API that both sides rely on: RunsService enforces them, ExecutionService's settings
are validated against them (so a misconfigured outbox fails at start-up, not with every call)."""

from __future__ import annotations

# RecordRuns: the most runs one call may carry (INVALID_ARGUMENT above it).
RECORD_RUNS_MAX_RUNS = 1000
