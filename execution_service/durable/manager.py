"""The run manager of the durable mode: the embedded RunManager's validation, loop and outcomes, with each run a DBOS
workflow (execution_service.durable.workflow), its effects checkpointed (effects), its steps in a durable stream
(stream), publishing as a checkpointed step (publishing), and WatchRun / CancelRun for runs of other replicas."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from dbos import DBOS

from agentrun_core.domain import (
    ErrorReason,
    Run,
    RunError,
    RunStatus,
    ToolCallStarted,
)
from agentrun_core.ids import run_id_problem
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.durable import journal
from execution_service.durable.admission import ENDING_QUEUE, RUN_QUEUE, Dequeued, DurableAdmission
from execution_service.durable.admitted_run import AdmittedRun
from execution_service.durable.cancellation import CancelRequests
from execution_service.durable.checkpoints import Checkpoints, Operation
from execution_service.durable.children import DurableChildren, unfinished_runs
from execution_service.durable.effects import (
    CancelGate,
    DurableModelProvider,
    DurableToolProvider,
    ToolStepReservations,
)
from execution_service.durable.failure import (
    FailedRun,
    enter_failure_steps,
    failed_run,
    failed_run_finished,
    workflow_error,
)
from execution_service.durable.publishing import RunPublisher
from execution_service.durable.recorder import DurableStepRecorder
from execution_service.durable.remote_cancel import CANCEL_STOP_S, confirm_cancelled, refuse_if_ended
from execution_service.durable.remote_tree import RemoteTree
from execution_service.durable.run_records import (
    base_run,
    digest_of_run,
    left_queue,
    previous_replica,
    queued_of,
    run_end,
    started_by,
)
from execution_service.durable.runtime import DurableRuntime
from execution_service.durable.stream import (
    RemoteRun,
    StreamPrefix,
    StreamWriter,
    encode_event,
    read_prefix,
    remote_run,
)
from execution_service.durable.workflow import END_STEP, DecidedEnd, DurableRunInput, RunEnd
from execution_service.engine.child_runs import ChildStart, ParentRun, child_fields
from execution_service.engine.composition import RunSetup
from execution_service.engine.events import RunEvent, RunFinishedEvent, RunQueuedEvent, RunStartedEvent, StepEvent
from execution_service.engine.instrumentation import RunTelemetry, current_span_ids, remote_parent
from execution_service.engine.live_run import FollowedRun, LiveRun
from execution_service.engine.manager import RunManager, _ended_in_queue, _terminal_run
from execution_service.engine.outcomes import LoopOutcome
from execution_service.engine.run_request import StartRun, is_retry_of
from execution_service.engine.run_tree import RunNode
from execution_service.engine.step_recorder import storable, utc_now
from execution_service.errors import RunAlreadyExists, RunAlreadyFinished, RunNotFound
from execution_service.model.base import ModelError, ModelProvider
from execution_service.tools.run_tools import RunTools

log = logging.getLogger(__name__)

PUBLISH_STEP = "agentrun.publish_run"
PUBLISH_RETRY_STEP = "agentrun.publish_run_retry"
FAILED_RUN_STEP = "agentrun.failed_run"
DEQUEUE_STEP = "agentrun.leave_queue"


class DurableRunManager(RunManager):
    def __init__(
        self,
        *args: Any,
        runtime: DurableRuntime,
        publisher: RunPublisher,
        cancels: CancelRequests,
        admission: DurableAdmission,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._runtime = runtime
        self._publisher = publisher
        self._cancels = cancels
        # Sub-agents' runs started here whose workflow has not begun yet (one that begins otherwise is a resumption).
        self._fresh: set[str] = set()
        self._queue = admission
        # The inputs of runs executing here as they started (their start time is that of leaving the queue).
        self._inputs: dict[str, DurableRunInput] = {}
        # Runs that entered through the shared queue executing here (DBOS's count of this replica's slots taken).
        self._from_queue_here = 0
        # The nodes of the runs executing here in their trees of sub-agent runs.
        self._nodes: dict[str, RunNode] = {}
        # Runs whose execution here resumed an earlier one (and that are live or kept finished here): their runs in
        # memory lack the steps of sub-agent runs that ended before the resumption, so they are followed through
        # their streams (remote_tree), which hold everything.
        self._resumed_here: set[str] = set()
        # Resumed runs executing here whose replay has not caught up with their stream, with the cancel that waits for
        # it (None: none; True: after the turn; False: immediate). A cancel applied during the replay would record its
        # step in the place of a replayed one (DURABLE_REPLAY_DIVERGED: the run ended FAILED instead of CANCELLED).
        self._replaying: dict[str, bool | None] = {}
        # Resumed parents waiting for a child that has not resumed here yet (durable.children, adopt_child).
        self._adopters: dict[str, LiveRun] = {}

    @property
    def replica(self) -> str:
        return self._runtime.replica_id

    async def shutdown(self, grace_s: float) -> None:
        """A draining replica takes no more runs from the shared queue, which the other replicas serve (it polled on
        and claimed runs it then held through its grace, until it died and they resumed elsewhere), then lets its
        runs go as the embedded manager does (the rest resume elsewhere, or here on a restart)."""
        self._runtime.stop_polling(RUN_QUEUE)
        await super().shutdown(grace_s)

    # --- start -----------------------------------------------------------------------------------------------

    async def start_or_attach(self, request: StartRun) -> FollowedRun:
        """An ExecuteAgent retried with the run id of a run another replica executes (its client lost that replica)
        follows that run, like a retry on the replica that runs it."""
        if (
            request.run_id
            and (self.find(request.run_id) is None or request.run_id in self._resumed_here)
            and run_id_problem(request.run_id) is None
        ):
            remote = await self._remote(request.run_id, wait_s=1.0)
            if remote is not None:
                digest = await started_by(request.run_id)
                if not is_retry_of(request, remote.user, remote.agent_name, digest):
                    raise RunAlreadyExists(request.run_id)
                return RemoteTree(remote)
        return await self.start(request)

    async def start_scheduled(self, request: StartRun) -> FollowedRun:
        """A schedule's tick run (durable.schedules): it enters the shared queue even while this replica drains, so a
        tick that DBOS handed to a draining replica still gets its run (another replica dequeues it)."""
        return await self.start(request, while_draining=True)

    async def _begin(
        self,
        run_id: str,
        request: StartRun,
        agent: AgentSpec,
        prompt: RenderedPrompt,
        provider: ModelProvider,
        model_name: str,
        setup: RunSetup,
    ) -> LiveRun:
        """A run enters the shared queue (execution_service.durable.admission): its admission record, then its
        workflow enqueued, which any replica with a free slot dequeues; returned as its starter follows it (RunQueued
        first when it has to wait, then its stream, or the run in memory when this replica takes it). QueueFull when
        it would wait and the queue is at its bound. A child run (sub-agent) runs within its parent's slot: its
        workflow starts at once, never queued (a parent waiting for a child that waits for a slot might never end)."""
        parent = request.parent
        now = utc_now()
        current_trace, current_span = current_span_ids()  # the ExecuteAgent call's, or the parent's tool call's
        started = RunStartedEvent(
            run_id=run_id,
            agent_name=agent.name,
            agent_version=agent.version,
            model_name=model_name,
            start_time=now,  # a queued run's: set when it leaves the queue (`left_queue`)
            trace_id=current_trace
            or (parent.base.trace_id if parent is not None else "")
            or request.trace_id
            or secrets.token_hex(16),
            user=request.user,
            replica=self.replica,
            session_id=parent.base.session_id if parent is not None else setup.session_id,
            forked_from=setup.forked_from,
            **child_fields(parent),
        )
        base = base_run(run_id, request, agent, started)
        run = DurableRunInput(
            run_id,
            base,
            started,
            agent,
            prompt,
            request.model or agent.model,
            setup,
            model_override=request.model,
            trace_parent=current_span if current_trace == started.trace_id else "",
        )
        if parent is not None:
            live = LiveRun(
                run_id=run_id,
                user=request.user,
                started=started,
                parent=parent.live,
                request_digest=digest_of_run(run),
            )
            self._live[run_id] = live
            self._fresh.add(run_id)
            try:
                await self._runtime.start_run(run)
            except BaseException:
                self._live.pop(run_id, None)
                self._fresh.discard(run_id)
                raise
            log.info("run started", extra={"run_id": run_id, "agent": agent.name, "replica": self.replica})
            return live
        return await self._enqueue(run)

    async def _enqueue(self, run: DurableRunInput) -> LiveRun:
        base, run_id = run.base, run.run_id
        timeout_s = self._limits.queue_timeout_s
        queued = RunQueuedEvent(
            run_id=run_id,
            agent_name=base.agent_name,
            agent_version=base.agent_version,
            model_name=base.model_name,
            enqueue_time=base.start_time,
            position=0,  # unknown: the queue is shared by every replica
            queue_name=RUN_QUEUE,
            queue_timeout=timedelta(seconds=timeout_s) if timeout_s > 0 else None,
            trace_id=base.trace_id,
            user=base.user,
        )
        encoded = encode_event(queued)
        shown = await self._queue.enter(run_id, encoded)
        run = dataclasses.replace(run, queued=queued, shown_queued=shown)
        try:
            await self._runtime.start_run(run, queue_name=RUN_QUEUE)
        except BaseException:
            await asyncio.shield(self._queue.abandon(run_id))
            raise
        if shown:  # once its workflow is enqueued (a QUEUED record of a run that never was stays QUEUED)
            self._publish_early(dataclasses.replace(base, status=RunStatus.QUEUED), "QUEUED")
        log.info(
            "run queued" if shown else "run enqueued",
            extra={"run_id": run_id, "agent": base.agent_name, "replica": self.replica, "queue": RUN_QUEUE},
        )
        follower = RemoteRun(
            run_id, base.user, None, queued=encoded if shown else None, local=lambda: self._live.get(run_id)
        )
        return AdmittedRun(
            run_id=run_id,
            user=base.user,
            started=None,
            follower=RemoteTree(follower),
            request_digest=digest_of_run(run),
        )

    # --- the workflow's body ---------------------------------------------------------------------------------

    async def execute(self, run: DurableRunInput) -> RunEnd:
        """Runs (or resumes) the run: called by the run workflow on the replica that dequeued it. A queued run's first
        operation leaves the queue (checkpointed: a resumption replays its start time and replica); a run cancelled or
        past its queue timeout by then ends there, without a RunStarted."""
        if self._shutting_down and run.run_id not in self._live:
            # A stopping replica takes no new run from the queue: the workflow stays pending, and a survivor takes
            # it over once this replica is silent (ReplicaHeartbeat.stop), as for the runs it leaves at the end.
            raise asyncio.CancelledError("the replica is stopping; the run starts on another replica")
        if run.queued is not None:  # its slot is free for the next queued run when it ends
            self._from_queue_here += 1
            self._runtime.wake_queues_when_this_workflow_ends(RUN_QUEUE, only_if=self._slot_may_be_awaited)
        live = self._live.get(run.run_id)
        if live is None:
            # Registered before it leaves the queue, so a cancel announced meanwhile finds it (and is honoured).
            live = LiveRun(
                run_id=run.run_id,
                user=run.base.user,
                started=None if run.queued is not None else run.started,
                queued=run.queued if run.shown_queued else None,
                request_digest=digest_of_run(run),
            )
            self._live[run.run_id] = live
        if run.queued is None:  # a sub-agent's run: started at once within its parent's slot
            fresh = run.run_id in self._fresh
            self._fresh.discard(run.run_id)
            checkpoints = Checkpoints(run.run_id) if fresh else await Checkpoints.resume(run.run_id)
        else:
            first_time = False

            async def leave_queue() -> Dequeued:
                nonlocal first_time
                first_time = True
                return await self._queue.leave(run.run_id, self.replica, utc_now())

            # Operation 0 of a queued run: leaving the queue (after one read of what an earlier execution recorded).
            checkpoints = await Checkpoints.resume(run.run_id)
            dequeued: Dequeued = await checkpoints.reserve().run_async({"name": DEQUEUE_STEP}, leave_queue)
            fresh = first_time  # ran now, not replayed: the run's first execution, its stream is empty
            run = left_queue(run, dequeued)
            self._inputs[run.run_id] = run
            if dequeued.cancelled or dequeued.timed_out:
                live.task = asyncio.current_task()
                return await self._end_in_queue(run, live, dequeued, checkpoints)
        if not fresh:
            self._resumed_here.add(run.run_id)
            self._replaying[run.run_id] = None
            if live.cancel_requested:  # cancelled here while its workflow started again: waits for the replay too
                self._defer_cancel(run.run_id, after_turn=live.control.stop_after_turn)
                live.cancel_requested = live.control.stop_after_turn = False
        prefix = StreamPrefix() if fresh else await read_prefix(run.run_id)
        live.task = asyncio.current_task()
        tree = self._tree(run, live, fresh)
        if not fresh:
            stored = await self._cancels.stored(live.run_id)  # requested while no replica ran it
            if stored is not None:
                self._defer_cancel(live.run_id, after_turn=stored)
        writer = StreamWriter(run.run_id, lambda event: _show_locally(live, event))
        writer.put(run.started)  # offset 0 (replayed, not written again, on a resumption)
        # Durable before this replica shows it (below) and before the run's setup (MCP servers, history), which may
        # take seconds: a replica killed meanwhile leaves a run every replica finds (WatchRun, CancelRun) and whose
        # resumption is marked as one.
        await writer.flush()
        if live.started is None:  # a run from the queue: its RunStarted is shown now
            live.start(run.started)
            journal.current().wake(run.run_id)  # its starter, if here, follows it in memory from now on
        resumed_from = previous_replica(prefix) if prefix.started is not None else None
        if resumed_from is not None:
            log.warning(
                "resuming a run",
                extra={"run_id": run.run_id, "previous_replica": resumed_from, "steps": len(prefix.steps)},
            )
        decided = None if fresh else checkpoints.recorded_result(END_STEP)
        if decided is not None:
            return await self._end_as_decided(run, live, writer, checkpoints, *decided)
        reservations = ToolStepReservations(checkpoints)
        recorder = DurableStepRecorder(
            run.run_id,
            writer.put_step,
            self._redactor,
            writer.flush,
            replica=self.replica,
            recorded=prefix.steps,
            resumed_from=resumed_from,
            started_at=run.base.start_time,
            function_calls=reservations.reserve,
            tree=tree,
        )
        recorder.when_caught_up(lambda: self._replay_caught_up(live))
        if fresh:
            self._publish_running(run)
        gate = CancelGate(live)
        traced = RunTelemetry.noop()
        try:
            model = self._providers(run.model)[0]
        except ModelError as exc:  # a replica configured unlike the one that started the run (no Gemini key...)
            log.error("this replica cannot run the run's model", extra={"run_id": run.run_id, "model": run.model})
            outcome = LoopOutcome.failed(
                ErrorReason.MODEL_REQUEST_INVALID, f"replica {self.replica} cannot run model {run.model}: {exc.message}"
            )
        else:
            provider = DurableModelProvider(model, writer.flush, gate, checkpoints)
            children = DurableChildren(self, ParentRun(live, run.base, tree, "", run.model_override), self._agents.get)
            tools = DurableToolProvider(
                RunTools(self._tools, children.tools),
                run.run_id,
                writer.flush,
                gate,
                reservations,
                caught_up=recorder.caught_up,
                children=children,
            )
            used = prefix.time_executed(run.base.start_time).total_seconds()
            timeout_s = max(run.agent.limits.run_timeout_s - used, 0.001)
            traced = self._run_telemetry(run, model.name, fresh)
            traced.secrets = recorder.secret_memory
            with traced.activate():  # ends the span if the execution stops (the replica stops: the run resumes)
                outcome = await self._outcome(
                    live, run.agent, run.prompt, provider, recorder, traced, timeout_s, tools, None, run.setup
                )
        with traced.activate():
            return await self._record_end(
                live,
                outcome,
                self._finish_durable(run, live, recorder, writer, checkpoints, outcome, traced),
                "recording a durable run's end",
            )

    def _keep_finished(self, live: LiveRun) -> None:
        """Keeps the finished run in memory (WatchRun, retries) among the last `retain_finished`."""
        self._finished[live.run_id] = live
        while len(self._finished) > self._limits.retain_finished:
            dropped, _ = self._finished.popitem(last=False)
            self._resumed_here.discard(dropped)

    def _slot_may_be_awaited(self) -> bool:
        """Called as the workflow of a run that came through the shared queue ends here: whether a queued run may be
        waiting for the slot it frees: this replica was full, or a global limit holds runs back (else every queued run
        was taken by the polls since it entered, and a poll now would find nothing)."""
        was_full = self._from_queue_here >= self._queue.limits.worker_concurrency
        self._from_queue_here -= 1
        return was_full or self._queue.limits.global_limit is not None

    async def _end_in_queue(
        self, run: DurableRunInput, live: LiveRun, dequeued: Dequeued, checkpoints: Checkpoints
    ) -> RunEnd:
        """The run ends as it leaves the queue, never started (as in embedded mode: its start and end are the time it
        left, its error is its one step): its stream holds its RunQueued at offset 0, the error step, RunFinished."""
        writer = StreamWriter(run.run_id, lambda event: _show_locally(live, event))
        writer.put(run.queued or queued_of(run))
        recorder = DurableStepRecorder(
            run.run_id,
            writer.put_step,
            self._redactor,
            writer.flush,
            replica=self.replica,
            started_at=run.base.start_time,
        )
        if dequeued.cancelled:
            outcome = LoopOutcome(
                RunStatus.CANCELLED,
                error=RunError(ErrorReason.CANCELLED, "the run was cancelled while it waited in the queue"),
            )
        else:
            outcome = self._queue_timeout_outcome()
        log.info(
            "a queued run ends without starting",
            extra={"run_id": run.run_id, "status": outcome.status.value, "replica": self.replica},
        )
        return await self._record_end(
            live,
            outcome,
            self._finish_durable(run, live, recorder, writer, checkpoints, outcome, RunTelemetry.noop()),
            "recording the end of a durable run that never started",
        )

    def _run_telemetry(self, run: DurableRunInput, provider: str, fresh: bool) -> RunTelemetry:
        """This execution's `invoke_agent` span: in the run's trace, a child of the span that started the run, on
        whichever replica executes it (engine.instrumentation, "Durable mode")."""
        return self._instruments.start_run(
            run_id=run.run_id,
            agent=run.agent,
            model=run.started.model_name,
            provider=provider,
            user=run.base.user,
            prompt=run.prompt,
            context=remote_parent(run.base.trace_id, run.trace_parent),
            extra={"agentrun.replica": self.replica, "agentrun.resumed": not fresh},
        )

    def _tree(self, run: DurableRunInput, live: LiveRun, fresh: bool) -> RunNode:
        """The run's node in its tree of sub-agent runs. A child started here by its parent's call is under its
        parent's node (its tokens count against its ancestors' budgets as they are used) and its LiveRun hands its
        steps to its parent's. A resumed child is a node of its own (its parent counts its tokens when it ends); its
        steps go to its parent's watchers here once its resumed parent's call has found it (`adopt_child`)."""
        agent, base = run.agent, run.base
        parent = self._nodes.get(base.parent_run_id) if fresh and base.parent_run_id else None
        if parent is not None and run.run_id not in parent.linked:
            node = parent.child(
                run.run_id, agent.name, agent.limits.token_budget, agent.limits.max_depth, base.parent_tool_call_id
            )
        else:
            node = RunNode(run.run_id, agent.name, agent.limits.token_budget, agent.limits.max_depth)
        adopter = self._adopters.pop(run.run_id, None)
        if adopter is not None:
            live.attach_to_parent(adopter)
        self._nodes[run.run_id] = node
        return node

    def _cancelled_outcome(self, live: LiveRun) -> LoopOutcome:
        if live.cancel_requested:
            return super()._cancelled_outcome(live)
        # The replica is stopping: the run is not over. Its workflow stays pending and resumes on this replica when
        # it restarts, or on another one.
        raise asyncio.CancelledError("the replica is stopping; the run resumes later")

    async def _finish_durable(
        self,
        run: DurableRunInput,
        live: LiveRun,
        recorder: DurableStepRecorder,
        writer: StreamWriter,
        checkpoints: Checkpoints,
        outcome: LoopOutcome,
        traced: RunTelemetry,
    ) -> RunEnd:
        """Decides the run's end (checkpointed before anything of it is recorded: a resumption records the same
        end, `_end_as_decided`), then records it."""
        # Numbered after the end's publishing (runs left pending by versions that did not checkpoint the end replay
        # their publishing at the same numbers).
        publish, retry, decide = checkpoints.reserve(), checkpoints.reserve(), checkpoints.reserve()
        decided = await decide.run_async({"name": END_STEP}, self._decide_end, run, live, recorder, outcome)
        for step in decided.terminal.execution_steps[len(recorder.steps) :]:
            writer.put_step(step)  # an end decided by an earlier execution (a run that ended in the queue)
        return await self._record_decided(run, live, writer, decided, traced, publish, retry)

    async def _decide_end(
        self, run: DurableRunInput, live: LiveRun, recorder: DurableStepRecorder, outcome: LoopOutcome
    ) -> DecidedEnd:
        error = recorder.error(outcome.error) if outcome.error is not None else None
        end = utc_now()
        base = run.base
        if live.started is None:
            base = _ended_in_queue(base, end)
        terminal = _terminal_run(base, recorder, outcome, error, end)
        tree = recorder.tree
        if tree.children:
            terminal = dataclasses.replace(
                terminal,
                token_usage_with_descendants=tree.usage_with_descendants,
                cost_with_descendants=tree.cost_with_descendants(terminal.cost),
            )
        return DecidedEnd(terminal, end, recorder.tool_calls)

    async def _end_as_decided(
        self,
        run: DurableRunInput,
        live: LiveRun,
        writer: StreamWriter,
        checkpoints: Checkpoints,
        operation: int,
        decided: DecidedEnd,
    ) -> RunEnd:
        """A resumed run whose earlier execution decided its end and stopped while recording it (its replica died,
        waiting for RunsService, say): that end is recorded, the steps its stream lacks written first. The loop does
        not run again: a run that was cancelled or timed out stays so."""
        terminal = decided.terminal
        log.warning(
            "a resumed run's end was decided before its replica stopped: recording that end",
            extra={"run_id": run.run_id, "status": terminal.status.value, "replica": self.replica},
        )
        for step in terminal.execution_steps:
            writer.put_step(step)  # those the stream holds are not written again (this replica's watchers get them)
        return await self._record_end(
            live,
            LoopOutcome(terminal.status, terminal.final_response, terminal.error),
            self._record_decided(
                run,
                live,
                writer,
                decided,
                RunTelemetry.noop(),
                checkpoints.at(operation - 2),  # its publishing operations (`_finish_durable`)
                checkpoints.at(operation - 1),
            ),
            "recording a durable run's end decided before its resumption",
        )

    async def _record_decided(
        self,
        run: DurableRunInput,
        live: LiveRun,
        writer: StreamWriter,
        decided: DecidedEnd,
        traced: RunTelemetry,
        publish: Operation,
        retry: Operation,
    ) -> RunEnd:
        """Records the run's decided end: its steps in its stream, its terminal record published to RunsService
        (`publish`, then `retry` until taken: checkpointed operations, at least once), RunFinished."""
        terminal, end = decided.terminal, decided.end
        await writer.flush()
        recorded = await publish.run_async(
            {"name": PUBLISH_STEP}, self._publisher.deliver, terminal, self._limits.publish_wait_s
        )
        traced.finish(terminal)
        writer.put(
            RunFinishedEvent(
                run_id=terminal.id,
                status=terminal.status,
                final_response=terminal.final_response,
                token_usage=terminal.token_usage,
                duration=end - terminal.start_time,
                end_time=end,
                steps_taken=terminal.steps_taken,
                tool_call_count=decided.tool_calls,
                error=terminal.error,
                cost=terminal.cost,
                recorded=recorded,
                token_usage_with_descendants=terminal.token_usage_with_descendants,
                cost_with_descendants=terminal.cost_with_descendants,
            )
        )
        await writer.close()
        self._live.pop(live.run_id, None)
        self._replaying.pop(live.run_id, None)
        self._nodes.pop(live.run_id, None)
        self._adopters.pop(live.run_id, None)
        if any(parent is live for parent in self._adopters.values()):  # its children that did not resume here
            self._adopters = {child: parent for child, parent in self._adopters.items() if parent is not live}
        self._keep_finished(live)
        await self._end_children_left_running(terminal, live)
        log.info("run finished", extra={"run_id": terminal.id, "status": terminal.status.value})
        if not recorded:
            await retry.run_async({"name": PUBLISH_RETRY_STEP}, self._publisher.deliver, terminal)
        self._inputs.pop(run.run_id, None)
        if run.queued is not None:
            await self._queue.forget(run.run_id)
        return run_end(terminal)

    # --- a failed workflow ------------------------------------------------------------------------------------

    async def fail(self, run: DurableRunInput, error: Exception) -> RunEnd:
        """Ends the run FAILED after `error` escaped `execute` (called by the run workflow): an error step and
        RunFinished in its stream, the FAILED record published to RunsService (a checkpointed step, retried like the
        normal end's), from the failure path's reserved step ids (execution_service.durable.failure)."""
        run = self._inputs.pop(run.run_id, run)  # with its start time, once it left the queue
        run_error = workflow_error(error, self.replica)
        log.error(
            "a durable run's workflow failed; the run ends FAILED",
            exc_info=error,
            extra={"run_id": run.run_id, "replica": self.replica, "reason": run_error.reason},
        )
        enter_failure_steps()
        failed = await DBOS.run_step_async({"name": FAILED_RUN_STEP}, self._failed_run, run, run_error)
        terminal = failed.terminal
        live = self._live.get(run.run_id)
        if live is None:
            live = LiveRun(
                run_id=run.run_id, user=run.base.user, started=run.started, request_digest=digest_of_run(run)
            )
        # This replica's watchers of the run get the steps its failed execution did not replay, then the end.
        for step in terminal.execution_steps[live.step_count : -1]:
            live.append_step(step)
        writer = StreamWriter(run.run_id, lambda event: _show_locally(live, event))
        if failed.write_started:
            writer.put(run.started)
        writer.put_step(terminal.execution_steps[-1])
        recorded = await DBOS.run_step_async(
            {"name": PUBLISH_STEP}, self._publisher.deliver, terminal, self._limits.publish_wait_s
        )
        writer.put(failed_run_finished(terminal, recorded))
        await writer.close()
        self._live.pop(run.run_id, None)
        self._nodes.pop(run.run_id, None)
        self._keep_finished(live)
        log.info(
            "run finished", extra={"run_id": run.run_id, "status": terminal.status.value, "reason": run_error.reason}
        )
        if run.queued is not None:
            await self._queue.forget(run.run_id)
        if not recorded:
            await DBOS.run_step_async({"name": PUBLISH_RETRY_STEP}, self._publisher.deliver, terminal)
        return run_end(terminal)

    async def end_given_up(self, run: DurableRunInput, error: RunError, end: datetime) -> bool:
        """Ends FAILED a run whose workflow DBOS gave up on (durable.given_up): its FAILED record (the steps its
        stream holds, then an error step at `end`) published to RunsService, then the error step and RunFinished
        written to its stream. False when RunsService did not take the record (nothing written: try again later).
        Outside any workflow; idempotent (the same `end` gives the same record, the stream keeps what it has)."""
        failed = await self._failed_run(run, error, end)
        terminal = failed.terminal
        if not await self._publisher.deliver(terminal, self._limits.publish_wait_s):
            return False
        writer = StreamWriter(run.run_id, lambda event: None)
        writer.put(run.started)  # offset 0: kept as it is when the run's stream has it
        writer.put_step(terminal.execution_steps[-1])
        writer.put(failed_run_finished(terminal, recorded=True))
        await writer.close()
        await self._queue.forget(run.run_id)
        log.error(
            "a durable run DBOS gave up on ended FAILED",
            extra={"run_id": run.run_id, "reason": terminal.error.reason if terminal.error else ""},
        )
        return True

    async def _failed_run(self, run: DurableRunInput, error: RunError, end: datetime | None = None) -> FailedRun:
        """The FAILED record of a run whose workflow failed: the steps its stream holds (what its clients saw), then
        the error step (at `end`, default now), its message scrubbed of secrets."""
        scrubbed = RunError(
            error.reason, storable(self._redactor.scrub_text(error.message, self._redactor.new_memory()))
        )
        return failed_run(run.base, await read_prefix(run.run_id), scrubbed, end or utc_now())

    def _publish_running(self, run: DurableRunInput) -> None:
        self._publish_early(run.base, "RUNNING")

    def _publish_early(self, record: Run, what: str) -> None:
        """A QUEUED or RUNNING record, best effort (the terminal record is the one that must arrive, and does;
        RunsService keeps the later status whichever arrives first)."""
        task = asyncio.create_task(self._publisher.deliver(record, 10.0), name=f"publish-{what.lower()}-{record.id}")
        task.add_done_callback(_log_failure)

    def _request_cancel(self, live: LiveRun, after_turn: bool) -> None:
        if live.run_id in self._replaying:
            self._defer_cancel(live.run_id, after_turn=after_turn)
            return
        super()._request_cancel(live, after_turn)

    def _defer_cancel(self, run_id: str, *, after_turn: bool) -> None:
        """A cancel of a resumed run whose replay has not caught up: applied once it has (an immediate one wins)."""
        waiting = self._replaying.get(run_id)
        self._replaying[run_id] = after_turn if waiting is None else waiting and after_turn
        log.info("cancelling a resumed run once its replay caught up", extra={"run_id": run_id})

    def _replay_caught_up(self, live: LiveRun) -> None:
        """The resumed run recorded again every step its stream held: a cancel that waited for it applies now, as if
        it had just been requested (after the step being recorded, as a cancel from another replica would)."""
        waiting = self._replaying.pop(live.run_id, None)
        if waiting is not None:
            asyncio.get_running_loop().call_soon(self.cancel_here, live.run_id, waiting)

    # --- sub-agents (durable.children) -----------------------------------------------------------------------

    async def start_child(self, child: ChildStart) -> None:
        await self._start_child(child)

    async def record_not_started(self, child: ChildStart, problem: str) -> None:
        await self._record_child_not_started(child, problem)

    async def _store_not_started(self, run: Run) -> None:
        """Published within the parent's call (a checkpointed step: at least once), at most publish_wait_s, then in
        the background while this replica runs (RunsService down: the parent's call does not wait for it)."""
        if not await self._publisher.deliver(run, self._limits.publish_wait_s):
            log.warning("the sub-agent run that did not start is not stored yet; retrying", extra={"run_id": run.id})
            task = asyncio.create_task(self._publisher.deliver(run), name=f"publish-not-started-{run.id}")
            task.add_done_callback(_log_failure)

    def adopt_child(self, child_run_id: str, parent: LiveRun) -> None:
        child = self.find(child_run_id)
        if child is None:
            self._adopters[child_run_id] = parent  # attached when its workflow resumes here (if it does)
        else:
            child.attach_to_parent(parent)

    def end_child(self, child_run_id: str, parent: LiveRun) -> bool:
        if self._shutting_down and not parent.cancel_requested:
            return False  # the replica stops: the child's workflow stays pending and resumes, like its parent's
        self._cancel_child(child_run_id, parent)
        return True

    def _cancel_child(self, child_run_id: str, parent: LiveRun) -> None:
        child = self._live.get(child_run_id)
        if child is None or child.is_finished:
            # Runs on another replica (or has not begun its execution here yet): asked through the cancel channel.
            task = asyncio.create_task(self._cancels.request(child_run_id, after_turn=False))
            task.add_done_callback(_log_failure)
            return
        if child.cancel_requested:
            return  # asked already (by its parent's call): a second cancel would interrupt its ending
        child.cancel_message = f"the run was cancelled: its parent run {parent.run_id} ended first"
        with contextlib.suppress(RunAlreadyFinished):  # it ended on its own meanwhile
            self.cancel(child_run_id)

    async def _end_children_left_running(self, terminal: Run, parent: LiveRun) -> None:
        """A parent that ended before a sub-agent's run it started: that run ends too (here, or by a stored cancel
        request wherever it resumes). The parent's call ends it when the parent ends while the call waits; this
        covers a parent that ended before its resumed call came to wait (a stored cancel applies as soon as the
        replay catches up), which left the child, resumed beside it, to run on to its end."""
        if terminal.status is RunStatus.COMPLETED:
            return
        started = [s.payload.child_run_id for s in terminal.execution_steps if isinstance(s.payload, ToolCallStarted)]
        for child_run_id in await unfinished_runs([run_id for run_id in started if run_id]):
            log.info(
                "cancelling a sub-agent run its ended parent left running",
                extra={"run_id": child_run_id, "parent_run_id": parent.run_id, "parent_status": terminal.status.value},
            )
            self._cancel_child(child_run_id, parent)

    # --- any replica -----------------------------------------------------------------------------------------

    async def locate(self, run_id: str) -> FollowedRun | None:
        live = self.find(run_id)
        if live is not None and not (live.is_queued and live.queued is None) and run_id not in self._resumed_here:
            return live
        return _with_children(await self._remote(run_id)) or live

    async def _remote(self, run_id: str, wait_s: float = 5.0) -> RemoteRun | None:
        """The run followed through its stream, with its RunQueued first while it waits in the shared queue (or when
        its starter showed it QUEUED)."""
        return await remote_run(
            run_id, wait_s, queued=await self._queue.queued_event(run_id), local=lambda: self._live.get(run_id)
        )

    def cancel(self, run_id: str, *, after_turn: bool = False, user: str | None = None) -> LiveRun:
        """Applies the cancel here, and stores it in the background (`_store_cancel`)."""
        live = super().cancel(run_id, after_turn=after_turn, user=user)
        task = asyncio.create_task(self._store_cancel(run_id, after_turn), name=f"store-cancel-{run_id}")
        task.add_done_callback(_log_failure)
        return live

    async def _store_cancel(self, run_id: str, after_turn: bool) -> None:
        """Stores a cancel applied here (not announced: no other replica runs the run), so that the run ends
        cancelled when it resumes elsewhere because this replica died before the run's end was checkpointed. A
        database that is down leaves the cancel applied here only (logged)."""
        try:
            await self._cancels.request(run_id, after_turn=after_turn, announce=False)
        except Exception:
            log.warning(
                "a cancel applied here could not be stored: if this replica dies before the run ends, the run "
                "resumes elsewhere uncancelled",
                exc_info=True,
                extra={"run_id": run_id},
            )

    async def cancel_anywhere(self, run_id: str, *, after_turn: bool = False, user: str | None = None) -> FollowedRun:
        if self.find(run_id) is not None:
            live = super().cancel(run_id, after_turn=after_turn, user=user)
            await asyncio.shield(self._store_cancel(run_id, after_turn))  # stored before CancelRun answers OK
            return live
        remote = await self._remote(run_id, wait_s=1.0)
        if remote is None or (user is not None and remote.user != user):
            return await super().cancel_anywhere(run_id, after_turn=after_turn, user=user)
        await refuse_if_ended(run_id)
        await self._cancels.request(run_id, after_turn=after_turn)
        # A run still waiting in the shared queue leaves it at once and ends CANCELLED (its workflow records it).
        if await self._queue.end_queued(run_id):
            self._runtime.wake_queues(ENDING_QUEUE)  # the ending queue starts it here, at once
            log.info("cancelling a queued run: it ends without starting", extra={"run_id": run_id})
        elif not after_turn:
            await confirm_cancelled(run_id, wait_s=self._limits.publish_wait_s + CANCEL_STOP_S)
        return RemoteTree(remote)

    def cancel_here(self, run_id: str, after_turn: bool) -> None:
        """A cancel request announced by any replica: applied when the run runs here."""
        try:
            super().cancel(run_id, after_turn=after_turn)  # stored by the replica that heard it first
            log.info("cancelling a run on request of another replica", extra={"run_id": run_id})
        except (RunNotFound, RunAlreadyFinished):
            pass  # another replica's run, or over already


def _with_children(remote: RemoteRun | None) -> RemoteTree | None:
    return RemoteTree(remote) if remote is not None else None


def _show_locally(live: LiveRun, event: RunEvent) -> None:
    """An event now durable goes to this replica's watchers of the run."""
    if isinstance(event, StepEvent):
        live.append_step(event.step, event.encoded)
    elif isinstance(event, RunFinishedEvent):
        live.finish(event)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a background task of the durable run manager failed", exc_info=task.exception())
