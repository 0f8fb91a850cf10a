"""Builds the durable mode of one replica: DBOS launched on the execution database, agentrun's tables, the runs'
journal, the run manager, the cancel listener and the heartbeat (stopped in reverse order through the server's
resources)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import grpc
from dbos import DBOS

from agentrun_core.domain import ExecutionStep, Run
from agentrun_core.telemetry import Telemetry
from execution_service.agents.registry import AgentRegistry
from execution_service.config import ExecutionSettings
from execution_service.durable import journal, workflow
from execution_service.durable.admission import (
    ENDING_QUEUE,
    ENDING_QUEUE_POLLING_INTERVAL_S,
    ENTERED_CHANNEL,
    RUN_QUEUE,
    DurableAdmission,
    QueueLimits,
)
from execution_service.durable.cancellation import CancelRequests
from execution_service.durable.database_problems import execution_database_problems, with_connect_timeout
from execution_service.durable.given_up import GivenUpRuns
from execution_service.durable.given_up import log as given_up_log
from execution_service.durable.manager import DurableRunManager
from execution_service.durable.notifications import ChannelListener
from execution_service.durable.periodic import Periodic
from execution_service.durable.publishing import RunPublisher
from execution_service.durable.queue_wakeups import QueueBell
from execution_service.durable.replicas import ReplicaHeartbeat
from execution_service.durable.retention import ExecutionRetention
from execution_service.durable.retention import log as retention_log
from execution_service.durable.runtime import MIN_POLL_GAP_S, DurableRuntime, RuntimeSettings, libpq_url
from execution_service.durable.schema import ensure_schema
from execution_service.publish.known_runs import KnownRuns
from execution_service.schedules.durable import TICK_WORKFLOW
from execution_service.tools.pool import McpToolPool

log = logging.getLogger(__name__)
# How long after its start a replica follows each woken poll with another, even alone (see start_durable).
STARTUP_FOLLOW_UP_S = 5.0


class NoOutbox:
    """The durable mode's RunSink: unused (each run's workflow publishes it), present for RunManager's type."""

    async def record(self, run: Run) -> None:
        raise RuntimeError("the durable mode publishes runs from their workflow, not through a sink")

    def journal_step(self, step: ExecutionStep) -> bytes | None:
        return None

    async def wait_delivered(self, run_id: str, timeout_s: float) -> bool:
        return False


def _recorded(known_runs: KnownRuns) -> Callable[[str], Awaitable[bool]]:
    """Whether RunsService holds the run's terminal record."""

    async def recorded(run_id: str) -> bool:
        return await known_runs.finished(run_id) is not None

    return recorded


def _run_exists(known_runs: KnownRuns) -> Callable[[str], Awaitable[bool]]:
    """Whether a run id was used before: its workflow is here, or RunsService has the run (a run whose workflow the
    retention deleted: its id must not start a second run)."""

    async def exists(run_id: str) -> bool:
        return await DBOS.get_workflow_status_async(run_id) is not None or await known_runs.exists(run_id)

    return exists


async def start_durable(
    settings: ExecutionSettings,
    agents: AgentRegistry,
    tools: McpToolPool,
    runs_channel: grpc.aio.Channel,
    telemetry: Telemetry,
    resources: AsyncExitStack,
) -> DurableRunManager:
    """The durable mode's run manager, started. ExecutionDatabaseUnusable (exit code 4) when the execution database
    cannot be used."""
    with execution_database_problems(settings.execution_database_url):
        return await _start_durable(settings, agents, tools, runs_channel, telemetry, resources)


async def _start_durable(
    settings: ExecutionSettings,
    agents: AgentRegistry,
    tools: McpToolPool,
    runs_channel: grpc.aio.Channel,
    telemetry: Telemetry,
    resources: AsyncExitStack,
) -> DurableRunManager:
    from execution_service.history.stored_runs import StoredRuns
    from execution_service.redaction import Redactor
    from execution_service.server import manager_limits, provider_factory, redaction_rules, runs_call_metadata

    url = libpq_url(settings.execution_database_url)
    replica = settings.resolved_replica_id
    await ensure_schema(with_connect_timeout(url))
    cancels = CancelRequests(url)
    admission = DurableAdmission(
        url,
        QueueLimits(
            per_replica=settings.max_concurrent_runs,
            global_limit=settings.global_max_concurrent_runs or None,
            max_queued=settings.max_queued_runs,
            queue_timeout_s=settings.queue_timeout_s,
            polling_interval_s=settings.queue_polling_interval_s,
        ),
    )
    await admission.open()
    resources.push_async_callback(admission.close)
    min_poll_gap_s = min(MIN_POLL_GAP_S, settings.queue_polling_interval_s)
    runtime = DurableRuntime(RuntimeSettings(settings.execution_database_url, replica, min_poll_gap_s))
    # Runs RunsService holds: a run id is used for good, and CancelRun of a run no replica follows any more (its
    # journal purged, or never started here) says it finished.
    known_runs = KnownRuns(None, runs_channel, runs_call_metadata(settings))
    publisher = RunPublisher(
        runs_channel,
        runs_call_metadata(settings),
        batch_max_records=settings.outbox_batch_records,
        batch_max_bytes=settings.outbox_batch_bytes,
    )
    manager = DurableRunManager(
        agents,
        tools,
        provider_factory(settings),
        NoOutbox(),
        run_exists=_run_exists(known_runs),
        finished_run=known_runs.finished,
        stored_runs=StoredRuns(runs_channel, runs_call_metadata(settings)),
        redactor=Redactor(redaction_rules(settings)),
        limits=manager_limits(settings),
        telemetry=telemetry,
        runtime=runtime,
        publisher=publisher,
        cancels=cancels,
        admission=admission,
    )
    resources.push_async_callback(publisher.close)
    run_journal = journal.Journal(url)
    await run_journal.open()
    journal.bind(run_journal)
    resources.push_async_callback(run_journal.close)
    resources.callback(journal.bind, None)
    workflow.bind(manager)
    resources.callback(workflow.bind, None)
    # Launching resumes this replica's pending runs (a restart): the manager is bound first.
    runtime.launch()
    resources.callback(runtime.destroy)
    # Every run enters the shared queue; a run ending without starting goes through the unlimited ending queue.
    limits = admission.limits
    await runtime.register_run_queue(
        RUN_QUEUE,
        worker_concurrency=limits.worker_concurrency,
        global_concurrency=limits.global_limit,
        polling_interval_s=limits.polling_interval_s,
    )
    await runtime.register_run_queue(
        ENDING_QUEUE,
        worker_concurrency=None,
        global_concurrency=None,
        polling_interval_s=max(limits.polling_interval_s, ENDING_QUEUE_POLLING_INTERVAL_S),
    )
    admission.start_sweeper(functools.partial(runtime.wake_queues, ENDING_QUEUE))
    resources.push_async_callback(admission.stop)
    # Runs entering the queue here wake the other replicas' pollers; theirs wake this one's.
    bell = QueueBell(functools.partial(admission.announce_entered, replica), min_gap_s=min_poll_gap_s)
    runtime.announce_entered_runs(bell.ring)
    resources.push_async_callback(bell.close)

    def took_over() -> None:
        """Recovered runs are back in their queues: this replica polls, and the others (it may be full) are told."""
        runtime.wake_queues()
        bell.ring()

    heartbeat = ReplicaHeartbeat(
        url,
        replica,
        interval_s=settings.heartbeat_interval_s,
        takeover_timeout_s=settings.takeover_timeout_s,
        took_over=took_over,
    )
    await heartbeat.beat()
    # Woken polls are followed by one more only while other replicas are alive (they may contend for the same runs),
    # and just after the start: DBOS puts this replica's own pending runs back in their queue in a background thread
    # after launch, which the first poll may come before (a restart then resumes them 0.1 s later, not at the timer).
    starting_until = time.monotonic() + STARTUP_FOLLOW_UP_S
    runtime.follow_up_polls_only_if(lambda: heartbeat.others_alive or time.monotonic() < starting_until)

    def heard_entered(ringer: str) -> None:
        if ringer != replica:
            heartbeat.heard_from_another()  # alive, and woken with this one: they contend now, not at the next beat
            runtime.wake_queues(RUN_QUEUE)

    # (Re)connected: what was announced meanwhile is found by one poll.
    entered = ChannelListener(url, ENTERED_CHANNEL, heard_entered, listening=lambda: runtime.wake_queues(RUN_QUEUE))
    entered.start()
    resources.push_async_callback(entered.stop)
    cancels.listen(manager.cancel_here)
    resources.push_async_callback(cancels.stop)
    heartbeat.start()
    resources.push_async_callback(heartbeat.stop)
    given_up = Periodic(
        GivenUpRuns(manager.end_given_up).sweep,
        interval_s=settings.given_up_check_interval_s,
        name="durable-given-up-runs",
        chore="the sweep for runs DBOS gave up on",
        failed="looking for runs DBOS gave up on failed; trying again next interval",
        log=given_up_log,
    )
    given_up.start()
    resources.push_async_callback(given_up.stop)
    if settings.execution_retention is not None:
        retention = ExecutionRetention(
            url,
            settings.execution_retention,
            recorded=_recorded(known_runs),
            journal_less=[TICK_WORKFLOW],
        )
        purging = Periodic(
            retention.purge,
            interval_s=settings.execution_retention_interval_s,
            name="durable-execution-retention",
            chore="the purge of finished durable runs",
            failed="purging finished durable runs failed; trying again next interval",
            log=retention_log,
            first_at_once=False,
        )
        purging.start()
        resources.push_async_callback(purging.stop)
    log.info(
        "durable mode on",
        extra={
            "replica": replica,
            "takeover_timeout_s": settings.takeover_timeout_s,
            "queue": RUN_QUEUE,
            "worker_concurrency": limits.worker_concurrency,
            "global_concurrency": limits.global_limit,
        },
    )
    return manager
