"""Publishing a durable run to RunsService: RecordRun with the shared backoff (agentrun_core.backoff), called as a
checkpointed step of the run's workflow, so RunsService being down loses nothing (the workflow waits and retries,
and a replica that resumes the run retries in its place). The local SQLite outbox is not used in this mode."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import grpc
from agentrun.runs.v1 import runs_service_pb2_grpc

from agentrun_core.backoff import Backoff
from agentrun_core.domain import Run
from execution_service.publish.records import decode_request, encode_run
from execution_service.publish.retry import DELIVERY_BACKOFF, Disposition, classify, server_retry_delay_s

log = logging.getLogger(__name__)

CallMetadata = Callable[[], Sequence[tuple[str, str]]]


class RunPublisher:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        call_metadata: CallMetadata,
        *,
        backoff: Backoff = DELIVERY_BACKOFF,
        call_timeout_s: float = 10.0,
    ) -> None:
        self._stub = runs_service_pb2_grpc.RunsServiceStub(channel)
        self._call_metadata = call_metadata
        self._backoff = backoff
        self._call_timeout_s = call_timeout_s

    async def deliver(self, run: Run, give_up_after_s: float | None = None) -> bool:
        """Sends the run until RunsService stores it (True). False when RunsService refuses it for good (logged at
        ERROR: nothing will change that) or, with `give_up_after_s`, when that much time passed first."""
        request = decode_request(encode_run(run))
        deadline = None if give_up_after_s is None else time.monotonic() + give_up_after_s
        failures = 0
        while True:
            try:
                await self._stub.RecordRun(request, timeout=self._call_timeout_s, metadata=tuple(self._call_metadata()))
                return True
            except grpc.aio.AioRpcError as exc:
                if classify(exc.code()) is Disposition.PARK:
                    log.error(
                        "RunsService refuses this run for good; it is not stored",
                        extra={"run_id": run.id, "code": exc.code().name, "details": exc.details()},
                    )
                    return False
                failures += 1
                delay = self._backoff.delay_s(failures, server_retry_delay_s(exc))
                if failures == 1 or failures % 10 == 0:
                    log.warning(
                        "RunsService call failed; retrying with backoff",
                        extra={"run_id": run.id, "code": exc.code().name, "attempt": failures},
                    )
            if deadline is not None and time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
