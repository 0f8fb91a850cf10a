"""The DBOS runtime of one replica: configuration, launch and shutdown, and the one place a run's workflow starts.

DBOS is a process-wide singleton: one replica is one process. `launch` must run on the service's event loop thread
(DBOS then runs the workflows it recovers or dequeues on that loop, beside the gRPC server and the MCP pool).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dbos import DBOS, SetWorkflowID

from execution_service.durable import workflow
from execution_service.durable.queue_wakeups import QueueWorkers

if TYPE_CHECKING:
    from execution_service.durable.workflow import DurableRunInput

log = logging.getLogger(__name__)

APP_NAME = "agentrun"
# DBOS recovers a workflow only on a replica of the same application version. Every agentrun replica runs the run
# workflow the same way, so they share one version (bump it when a change makes old runs unable to replay).
# 2: the run's stream and call results are in its journal (execution_service.durable.journal), not in DBOS streams and
# steps. 3: runs enter the shared queue; the workflow's first step leaves it (execution_service.durable.admission).
APP_VERSION = "agentrun-run-workflow-3"


def sqlalchemy_url(url: str) -> str:
    """The URL with the psycopg 3 driver named, as DBOS's SQLAlchemy engine needs it."""
    scheme, _, rest = url.partition("://")
    if scheme in ("postgresql", "postgres"):
        return f"postgresql+psycopg://{rest}"
    return url


def libpq_url(url: str) -> str:
    """The URL as psycopg.connect takes it (no +driver suffix)."""
    scheme, _, rest = url.partition("://")
    return f"postgresql://{rest}" if scheme.startswith("postgres") else url


# Woken polls of one queue: a few at once, then one per this interval, however often the replica is woken
# (queue_wakeups.PollWait).
MIN_POLL_GAP_S = 0.1


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    database_url: str
    replica_id: str
    min_poll_gap_s: float = MIN_POLL_GAP_S


class DurableRuntime:
    def __init__(self, settings: RuntimeSettings) -> None:
        self._settings = settings
        self._launched = False
        self._queue_workers = QueueWorkers(min_gap_s=settings.min_poll_gap_s)
        # Tells the other replicas that a run entered a queue (queue_wakeups.QueueBell.ring); None: nobody to tell.
        self._announce_entered: Callable[[], None] | None = None

    @property
    def replica_id(self) -> str:
        return self._settings.replica_id

    def launch(self) -> None:
        """Creates (or migrates) DBOS's tables in the execution database and starts DBOS, which resumes the
        pending runs of this replica's id (a restart). Call from the event loop's thread."""
        asyncio.get_running_loop()  # DBOS adopts the running loop for the workflows it starts itself
        DBOS(
            config={
                "name": APP_NAME,
                "system_database_url": sqlalchemy_url(self._settings.database_url),
                "executor_id": self._settings.replica_id,
                "application_version": APP_VERSION,
                "notification_listener_polling_interval_sec": 1.0,
                # How often DBOS flushes the NOTIFYs of its events and streams, which agentrun does not use (runs'
                # streams are in the journal): at DBOS's default 0.01 s its notifier thread woke 100 times a second
                # to find nothing, ~7 ms of an idle replica's CPU per second. (DBOS.destroy waits for its sleep.)
                "notification_coalesce_sec": 0.1,
            }
        )
        # agentrun's queues are polled by QueueWorkers, woken when there is work, not on DBOS's timer (DBOS still
        # polls its own internal queue).
        DBOS.listen_queues([])
        DBOS.launch()
        self._launched = True
        log.info("durable mode: DBOS launched", extra={"replica": self._settings.replica_id})

    def destroy(self) -> None:
        """Stops DBOS. DBOS made its own thread pool the event loop's default executor and shuts it down here, so the
        loop gets a new one for whatever still runs on it (asyncio.to_thread during the rest of the shutdown)."""
        if self._launched:
            self._queue_workers.stop()
            DBOS.destroy(destroy_registry=False)
            self._launched = False
            asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(thread_name_prefix="agentrun"))

    async def register_run_queue(
        self, name: str, *, worker_concurrency: int | None, global_concurrency: int | None, polling_interval_s: float
    ) -> None:
        """Declares the DBOS queue runs enter (admission by queue): at most `worker_concurrency` of its runs execute
        on one replica and `global_concurrency` on all; each replica polls it when woken (`wake_queues`) and every
        `polling_interval_s` otherwise. After `launch`."""
        from dbos._dbos import _get_dbos_instance

        queue = await DBOS.register_queue_async(
            name,
            worker_concurrency=worker_concurrency,
            global_concurrency=global_concurrency,
            polling_interval_sec=polling_interval_s,
        )
        self._queue_workers.start(_get_dbos_instance(), queue)

    def stop_polling(self, queue_name: str) -> None:
        """This replica takes no more work from the queue (it drains): the other replicas do."""
        self._queue_workers.stop_polling(queue_name)

    def follow_up_polls_only_if(self, others_alive: Callable[[], bool]) -> None:
        """A woken poll is followed by one more (replicas woken together contend) only while `others_alive()`."""
        self._queue_workers.follow_up_only_if(others_alive)

    def announce_entered_runs(self, announce: Callable[[], None]) -> None:
        """`announce()` is called after each run enters a queue here, to tell the other replicas."""
        self._announce_entered = announce

    def wake_queues(self, *queue_names: str) -> None:
        """This replica's named queues (all without a name) are polled now (a run entered, a slot freed): callable
        from any thread."""
        self._queue_workers.wake(*queue_names)

    def wake_queues_when_this_workflow_ends(self, queue_name: str, only_if: Callable[[], bool]) -> None:
        """Called from a run's workflow: once DBOS has recorded its end and released its slot (the workflow's task is
        done), the queue is polled here if `only_if()` (called then: may a run wait for that slot?), so the next
        queued run starts at once."""
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(lambda _: self._queue_workers.wake(queue_name) if only_if() else None)

    async def start_run(self, run: DurableRunInput, *, queue_name: str | None = None) -> None:
        """Starts the run's workflow (id: the run id): at once on this replica, or through the DBOS queue
        `queue_name` (admission by queue; see register_run_queue). The one place a run's workflow starts. A queued
        run may execute on another replica: its starter then follows it through its stream (stream.RemoteRun), and
        the replica that dequeues it runs DurableRunManager.execute as for any run it did not start."""
        with SetWorkflowID(run.run_id):
            if queue_name is None:
                await DBOS.start_workflow_async(workflow.run_workflow, run)
            else:
                await DBOS.enqueue_workflow_async(queue_name, workflow.run_workflow, run)
                self._entered(queue_name)

    def _entered(self, queue_name: str) -> None:
        """A run is in the queue: this replica polls it, the others are told. Never raises (the run is enqueued: a
        failure here must not read as one to enqueue it); a lost wake costs a run at most a polling interval."""
        try:
            self._queue_workers.wake(queue_name)
            if self._announce_entered is not None:
                self._announce_entered()
        except Exception:
            log.exception("could not wake the queue pollers for a run that entered", extra={"queue": queue_name})
