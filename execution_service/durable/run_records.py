"""The records of a durable run built from its request and its workflow's input: the run as it starts, as it leaves
the queue, its RunQueued, the replica it last ran on, the digest of the request that started it, and its end."""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta

from dbos import DBOS

from agentrun_core.domain import Run, RunResumed, RunStatus
from execution_service.agents.spec import AgentSpec
from execution_service.durable.admission import RUN_QUEUE, Dequeued
from execution_service.durable.stream import StreamPrefix
from execution_service.durable.workflow import DurableRunInput, RunEnd
from execution_service.engine.events import RunQueuedEvent, RunStartedEvent
from execution_service.engine.run_request import StartRun, request_digest

log = logging.getLogger(__name__)


def base_run(run_id: str, request: StartRun, agent: AgentSpec, started: RunStartedEvent) -> Run:
    return Run(
        id=run_id,
        agent_name=agent.name,
        agent_version=agent.version,
        user=request.user,
        task=request.task,
        labels=dict(request.labels),
        variables=dict(request.variables),
        status=RunStatus.RUNNING,
        model_name=started.model_name,
        start_time=started.start_time,
        trace_id=started.trace_id,
        session_id=started.session_id,
        forked_from=started.forked_from,
        parent_run_id=started.parent_run_id,
        root_run_id=started.root_run_id,
        parent_tool_call_id=started.parent_tool_call_id,
        depth=started.depth,
    )


def run_end(run: Run) -> RunEnd:
    return RunEnd(
        run_id=run.id,
        status=run.status,
        final_response=run.final_response,
        error=run.error,
        usage_with_descendants=run.token_usage_with_descendants or run.token_usage,
        cost_with_descendants=run.cost_with_descendants or run.cost,
    )


def left_queue(run: DurableRunInput, dequeued: Dequeued) -> DurableRunInput:
    """The run as it starts: its start time and replica those of the moment it left the queue (replayed from that
    step's checkpoint on a resumption), the time it waited stored with it."""
    start = dequeued.start_time
    base = dataclasses.replace(
        run.base, status=RunStatus.RUNNING, start_time=start, queue_duration=start - run.base.start_time
    )
    started = dataclasses.replace(run.started, start_time=start, replica=dequeued.replica)
    return dataclasses.replace(run, base=base, started=started)


def queued_of(run: DurableRunInput) -> RunQueuedEvent:
    """The RunQueued of a run whose input has none."""
    return RunQueuedEvent(
        run_id=run.run_id,
        agent_name=run.base.agent_name,
        agent_version=run.base.agent_version,
        model_name=run.base.model_name,
        enqueue_time=run.base.start_time - (run.base.queue_duration or timedelta(0)),
        position=0,
        queue_name=RUN_QUEUE,
        queue_timeout=None,
        trace_id=run.base.trace_id,
        user=run.base.user,
    )


def previous_replica(prefix: StreamPrefix) -> str:
    for step in reversed(prefix.steps):
        if isinstance(step.payload, RunResumed):
            return step.payload.replica
    return prefix.started.replica if prefix.started is not None else ""


def digest_of_run(run: DurableRunInput) -> str:
    """The digest of the request that started the run (engine.run_request.request_digest), from its workflow's input."""
    return request_digest(run.base.agent_name, run.base.task, run.base.variables, run.model_override)


async def started_by(run_id: str) -> str:
    """The digest of the request that started the run's workflow, read from its input ("" when it cannot be read)."""
    try:
        statuses = await DBOS.list_workflows_async(workflow_ids=[run_id], load_input=True, load_output=False)
        inputs = statuses[0].input if statuses else None
    except Exception:  # an input this version cannot read: the run's agent and caller still decide
        log.warning("could not read a durable run's input", exc_info=True, extra={"run_id": run_id})
        return ""
    run = inputs["args"][0] if inputs and inputs["args"] else None
    return digest_of_run(run) if isinstance(run, DurableRunInput) else ""
