"""Starts, tracks, cancels and publishes runs. One asyncio task per run, independent of any client stream, so a
run survives a detached client and a disconnect cancels it only when the manager is told to.

Admission: at most `max_concurrent_runs` runs execute at once; a run over that waits QUEUED in the admission queue
(at most `max_queued_runs` of them, then RESOURCE_EXHAUSTED) for at most `queue_timeout_s`, then ends TIMED_OUT with
reason QUEUE_TIMEOUT. The run timeout counts from the start of execution, after the wait."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from agentrun_core.domain import (
    ErrorReason,
    ExecutionStep,
    Run,
    RunError,
    RunStatus,
    TokenUsage,
    tool_calls_from_steps,
)
from agentrun_core.echo import shown
from agentrun_core.ids import new_run_id, run_id_problem
from agentrun_core.tasks import complete_despite_cancellation
from agentrun_core.telemetry import EXECUTION_SERVICE_NAME, Telemetry
from execution_service.agents.registry import AgentRegistry
from execution_service.agents.spec import AgentSpec, RenderedPrompt
from execution_service.engine.admission import EMBEDDED_QUEUE_NAME, AdmissionQueue, Ticket, within_parent_slot
from execution_service.engine.child_runs import ChildRuns, ChildStart, child_fields
from execution_service.engine.composition import ForkRequest, RunSetup, fork_setup, session_setup
from execution_service.engine.events import RunFinishedEvent, RunQueuedEvent, RunStartedEvent
from execution_service.engine.instrumentation import EngineInstruments, RunTelemetry
from execution_service.engine.live_run import FollowedRun, LiveRun
from execution_service.engine.loop import LoopInput, run_agent_loop
from execution_service.engine.outcomes import LoopOutcome
from execution_service.engine.run_request import (
    StartRun,
    check_sizes,
    digest_of,
    find_agent,
    is_retry_of,
    render_request,
)
from execution_service.engine.run_tree import RunNode
from execution_service.engine.step_recorder import StepRecorder, utc_now
from execution_service.errors import (
    AgentUnusable,
    InvalidRequest,
    RunAlreadyExists,
    RunAlreadyFinished,
    RunNotFound,
    ServiceShuttingDown,
)
from execution_service.history.stored_runs import StoredRuns
from execution_service.model.base import ModelError, ModelProvider, ProviderNotConfigured
from execution_service.model.pricing import price_steps
from execution_service.publish.base import RunSink
from execution_service.redaction import Redactor
from execution_service.tools.base import ToolProvider, ToolResolutionError
from execution_service.tools.run_tools import RunTools
from execution_service.tools.sub_agents import SubAgentTools

log = logging.getLogger(__name__)

T = TypeVar("T")

ProviderFactory = Callable[[str], tuple[ModelProvider, str]]


@dataclass(frozen=True, slots=True)
class ManagerLimits:
    max_task_bytes: int = 100_000
    max_variables_bytes: int = 100_000
    max_labels: int = 64
    # Runs executing at once; a run over this waits in the admission queue (QUEUED), which holds at most
    # max_queued_runs (0: no queue, refused at once), each for at most queue_timeout_s (0: no limit).
    max_concurrent_runs: int = 2000
    max_queued_runs: int = 10_000
    queue_timeout_s: float = 600.0
    max_parallel_tools: int = 8
    # Finished runs kept in memory for WatchRun / idempotent retries.
    retain_finished: int = 1000
    # How long a run's end waits for RunsService to acknowledge the terminal record before RunFinished goes out,
    # so a client that reads the run right after its stream ended finds it stored (not waited for while RunsService
    # is known to be failing).
    publish_wait_s: float = 2.0


class RunManager:
    def __init__(
        self,
        agents: AgentRegistry,
        tools: ToolProvider,
        providers: ProviderFactory,
        sink: RunSink,
        *,
        redactor: Redactor | None = None,
        limits: ManagerLimits | None = None,
        telemetry: Telemetry | None = None,
        run_exists: Callable[[str], Awaitable[bool]] | None = None,
        finished_run: Callable[[str], Awaitable[tuple[str, RunStatus] | None]] | None = None,
        stored_runs: StoredRuns | None = None,
    ) -> None:
        """`run_exists` tells whether a run id was used before (outbox or RunsService): an ExecuteAgent naming such
        an id that is not live here is ALREADY_EXISTS rather than a second execution (it raises RunIdUncheckable,
        UNAVAILABLE, when it cannot tell). `finished_run` gives the user
        and status of a run that ended but is no longer in memory, so cancelling it is FAILED_PRECONDITION."""
        self._run_exists = run_exists
        # Sessions' earlier runs and forks' originals are read from RunsService through this.
        self._stored_runs = stored_runs
        self._finished_run = finished_run
        self._agents = agents
        self._tools = tools
        self._providers = providers
        self._sink = sink
        self._redactor = redactor or Redactor()
        self._limits = limits or ManagerLimits()
        # Default: in-process providers exporting nothing (what the service has with no OTEL_* settings).
        self._instruments = EngineInstruments(
            telemetry or Telemetry.with_exporters(EXECUTION_SERVICE_NAME), self._redactor
        )
        self._live: dict[str, LiveRun] = {}
        self._finished: OrderedDict[str, LiveRun] = OrderedDict()
        self._shutting_down = False
        self._stopped = False
        self._admission = AdmissionQueue(self._limits.max_concurrent_runs, self._limits.max_queued_runs)

    # --- queries ---------------------------------------------------------------------------------------------

    def find(self, run_id: str) -> LiveRun | None:
        return self._live.get(run_id) or self._finished.get(run_id)

    async def locate(self, run_id: str) -> FollowedRun | None:
        """The run to follow: here, the one in memory (the durable mode also finds the runs of other replicas)."""
        return self.find(run_id)

    @property
    def live_count(self) -> int:
        """Runs in progress here: executing or waiting in the queue."""
        return len(self._live)

    @property
    def stopped(self) -> bool:
        """True once `shutdown` has let its runs go (finished, interrupted or left to resume elsewhere): the streams
        the service ends from then on cancel none."""
        return self._stopped

    @property
    def executing_count(self) -> int:
        return self._admission.running

    @property
    def queued_count(self) -> int:
        return self._admission.queued

    # --- start -----------------------------------------------------------------------------------------------

    async def start_or_attach(self, request: StartRun) -> FollowedRun:
        """`start`, for ExecuteAgent (the durable mode also reattaches to a run another replica executes)."""
        return await self.start(request)

    async def fork(self, request: ForkRequest) -> LiveRun:
        """Starts a fork of a stored run (execution_service.engine.composition)."""
        if self._shutting_down:
            raise ServiceShuttingDown("the execution service is shutting down; retry on another instance")
        fork = await fork_setup(self._stored_runs, self._tools, functools.partial(find_agent, self._agents), request)
        return await self.start(
            StartRun(
                agent_name=fork.agent_name,
                task=fork.task,
                user=request.user,
                variables=fork.variables,
                labels=fork.labels,
                model=fork.model,
            ),
            fork.setup,
        )

    async def start(self, request: StartRun, setup: RunSetup | None = None, *, while_draining: bool = False) -> LiveRun:
        """Validates the request and starts the run. An existing run id reattaches to that run (idempotent retry).
        `setup`: what a fork adds (a run with `request.session_id` loads its session's history itself).

        A draining service refuses new runs (ServiceShuttingDown: the client retries on another instance), except a
        sub-agent's (its parent runs on through the grace and waits for it) and, with `while_draining`, a run that
        nobody follows from here (the durable mode's schedule ticks: it enters the shared queue, which the replicas
        that are not draining serve)."""
        if self._shutting_down and request.parent is None and not while_draining:
            raise ServiceShuttingDown("the execution service is shutting down; retry on another instance")
        if request.run_id:
            problem = run_id_problem(request.run_id)
            if problem is not None:
                raise InvalidRequest("run_id", problem)
            existing = self.find(request.run_id)
            if existing is not None:
                if not is_retry_of(request, existing.user, existing.agent_name, existing.request_digest):
                    # The same answer as for any run id used before: nothing tells whose run it is, or that it is live.
                    raise RunAlreadyExists(request.run_id)
                return existing
            if request.parent is None and self._run_exists is not None and await self._run_exists(request.run_id):
                raise RunAlreadyExists(request.run_id)
        agent = find_agent(self._agents, request.agent_name)
        check_sizes(request, self._limits)
        prompt = await render_request(agent, request)
        if setup is None:
            setup = (
                await session_setup(self._stored_runs, self._tools, agent, request.session_id, request.user)
                if request.session_id
                else RunSetup()
            )
        agent = setup.agent(agent)
        try:
            provider, model_name = self._providers(request.model or agent.model)
        except ProviderNotConfigured as exc:
            chosen = (
                f"model {shown(request.model)}" if request.model else f"agent {agent.name!r} (model {agent.model!r})"
            )
            raise AgentUnusable(f"{chosen} cannot run on this execution service: {exc.message}") from None
        except ModelError as exc:
            raise InvalidRequest("model", exc.message) from None

        return await self._begin(request.run_id or new_run_id(), request, agent, prompt, provider, model_name, setup)

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
        """Starts a validated run: a slot or a place in the admission queue, its first record (RUNNING, or QUEUED),
        then its task (the durable mode starts a workflow instead). A child run (sub-agent) runs within its parent's
        slot: it never waits in the queue (a parent waiting for a child that waits for the parent's slot would never
        end)."""
        parent = request.parent
        ticket = self._admission.enter() if parent is None else within_parent_slot()  # QueueFull: no slot, no place
        try:
            # The run's span starts first: its trace id is the run's trace_id.
            traced = self._instruments.start_run(
                run_id=run_id, agent=agent, model=model_name, provider=provider.name, user=request.user, prompt=prompt
            )
        except BaseException:
            self._admission.leave(ticket)
            raise
        tree = (
            parent.tree.child(
                run_id, agent.name, agent.limits.token_budget, agent.limits.max_depth, parent.tool_call_id
            )
            if parent is not None
            else RunNode(run_id, agent.name, agent.limits.token_budget, agent.limits.max_depth)
        )
        base = Run(
            id=run_id,
            agent_name=agent.name,
            agent_version=agent.version,
            user=request.user,
            task=request.task,
            labels=dict(request.labels),
            variables=dict(request.variables),
            status=RunStatus.RUNNING if ticket.admitted else RunStatus.QUEUED,
            model_name=model_name,
            start_time=utc_now(),
            trace_id=traced.trace_id or request.trace_id or secrets.token_hex(16),
            session_id=parent.base.session_id if parent is not None else setup.session_id,
            forked_from=setup.forked_from,
            **child_fields(parent),
        )
        digest = digest_of(request)
        if ticket.admitted:
            live = LiveRun(
                run_id=run_id,
                user=request.user,
                started=_started_event(base),
                parent=parent.live if parent else None,
                request_digest=digest,
            )
        else:
            live = LiveRun(
                run_id=run_id,
                user=request.user,
                started=None,
                queued=self._queued_event(base, ticket),
                request_digest=digest,
            )
        self._live[run_id] = live
        with traced.activate():  # the first record and the run task carry the run's trace context
            try:
                await self._sink.record(base)
            except BaseException:
                self._live.pop(run_id, None)
                self._admission.leave(ticket)
                raise
            live.task = asyncio.create_task(
                self._execute(live, base, agent, prompt, provider, traced, tree, request.model, setup, ticket),
                name=f"run-{run_id}",
            )
        log.info(
            "run started" if ticket.admitted else "run queued",
            extra={
                "run_id": run_id,
                "agent": agent.name,
                "model": model_name,
                "user": request.user,
                **({} if ticket.admitted else {"queue_position": ticket.position}),
            },
        )
        return live

    def _queued_event(self, base: Run, ticket: Ticket) -> RunQueuedEvent:
        timeout_s = self._limits.queue_timeout_s
        return RunQueuedEvent(
            run_id=base.id,
            agent_name=base.agent_name,
            agent_version=base.agent_version,
            model_name=base.model_name,
            enqueue_time=base.start_time,
            position=ticket.position,
            queue_name=EMBEDDED_QUEUE_NAME,
            queue_timeout=timedelta(seconds=timeout_s) if timeout_s > 0 else None,
            trace_id=base.trace_id,
            user=base.user,
        )

    # --- the run task ----------------------------------------------------------------------------------------

    async def _execute(
        self,
        live: LiveRun,
        base: Run,
        agent: AgentSpec,
        prompt: RenderedPrompt,
        provider: ModelProvider,
        traced: RunTelemetry,
        tree: RunNode,
        model_override: str,
        setup: RunSetup,
        ticket: Ticket,
    ) -> None:
        journal_step, stream_step = self._sink.journal_step, live.append_step

        def emit(step: ExecutionStep) -> None:
            # Journaled first: a step a client saw is in the record even if this process dies right after. The
            # stream sends the bytes the journal wrote (the step is serialized once).
            stream_step(step, journal_step(step))

        recorder = StepRecorder(live.run_id, emit, self._redactor, live.handed_off, tree)
        traced.secrets = recorder.secret_memory  # captured span content is scrubbed like the steps
        outcome: LoopOutcome
        try:
            if live.started is None:
                with live.cancellable():  # cancelled while it waits; at once if it was cancelled before
                    base = await self._leave_queue(live, base, ticket)
        except _QueueTimedOut:
            self._admission.leave(ticket)
            outcome = self._queue_timeout_outcome()
        except asyncio.CancelledError:  # cancelled, or the service stops, while the run waits for a slot
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            self._admission.leave(ticket)
            outcome = self._cancelled_outcome(live)
        else:
            try:
                # The run timeout counts from the start of execution, not from the wait in the queue.
                tools = self._run_tools(live, base, tree, model_override)
                outcome = await self._outcome(
                    live, agent, prompt, provider, recorder, traced, agent.limits.run_timeout_s, tools, setup=setup
                )
            finally:
                self._admission.leave(ticket)  # the next run in line starts while this one is published
        await self._record_end(
            live, outcome, self._finish(live, base, recorder, outcome, traced), "recording a run's end"
        )

    async def _record_end(self, live: LiveRun, outcome: LoopOutcome, recording: Coroutine[Any, Any, T], what: str) -> T:
        """Records the end of a run whose loop has its outcome: a cancel now changes nothing (`LiveRun.ending`), and
        the recording completes whatever cancellation comes, unless the service is stopping."""
        live.ending = outcome.status
        return await complete_despite_cancellation(recording, what=what, give_way=lambda: self._shutting_down)

    def _queue_timeout_outcome(self) -> LoopOutcome:
        return LoopOutcome(
            RunStatus.TIMED_OUT,
            error=RunError(
                ErrorReason.QUEUE_TIMEOUT,
                f"the run waited in the queue for a free slot longer than the queue timeout of "
                f"{self._limits.queue_timeout_s:g} s (AGENTRUN_QUEUE_TIMEOUT_S) and never started",
            ),
        )

    async def _leave_queue(self, live: LiveRun, base: Run, ticket: Ticket) -> Run:
        """Waits for a slot (at most the queue timeout: _QueueTimedOut), then starts the run: RunStarted, and the
        RUNNING record with the time it waited. Returns that record."""
        timeout_s = self._limits.queue_timeout_s
        try:
            async with asyncio.timeout(timeout_s if timeout_s > 0 else None):
                await self._admission.wait(ticket)
        except TimeoutError:
            raise _QueueTimedOut from None
        now = utc_now()
        running = dataclasses.replace(
            base, status=RunStatus.RUNNING, start_time=now, queue_duration=now - base.start_time
        )
        live.start(_started_event(running))
        await self._sink.record(running)
        log.info(
            "run started",
            extra={
                "run_id": live.run_id,
                "agent": base.agent_name,
                "model": base.model_name,
                "user": base.user,
                "queued_s": round((now - base.start_time).total_seconds(), 3),
            },
        )
        return running

    async def _outcome(
        self,
        live: LiveRun,
        agent: AgentSpec,
        prompt: RenderedPrompt,
        provider: ModelProvider,
        recorder: StepRecorder,
        traced: RunTelemetry,
        timeout_s: float,
        tools: ToolProvider | None = None,
        max_parallel_tools: int | None = None,
        setup: RunSetup | None = None,
    ) -> LoopOutcome:
        """How the run's loop ended, within `timeout_s`: its own outcome, TIMED_OUT, CANCELLED (or INTERRUPTED, see
        `_cancelled_outcome`), or FAILED with INTERNAL for an unexpected error. `tools` (default: this manager's) and
        `max_parallel_tools` are what the durable mode wraps; `setup`: a session's history, a fork's replay."""
        outcome: LoopOutcome
        try:
            with live.cancellable():  # RunManager.cancel cancels its task only in here
                async with asyncio.timeout(timeout_s):
                    outcome = await self._run_loop(
                        live, agent, prompt, provider, recorder, traced, tools or self._tools, max_parallel_tools, setup
                    )
        except TimeoutError:
            outcome = LoopOutcome(
                RunStatus.TIMED_OUT,
                error=RunError(
                    ErrorReason.RUN_TIMEOUT,
                    f"the run took longer than its timeout of {agent.limits.run_timeout_s:g} s (limits.run_timeout)",
                ),
            )
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
            outcome = self._cancelled_outcome(live)
        except Exception as exc:
            log.exception("run failed unexpectedly", extra={"run_id": live.run_id})
            outcome = LoopOutcome.failed(ErrorReason.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
        return outcome

    async def _run_loop(
        self,
        live: LiveRun,
        agent: AgentSpec,
        prompt: RenderedPrompt,
        provider: ModelProvider,
        recorder: StepRecorder,
        traced: RunTelemetry,
        tool_provider: ToolProvider,
        max_parallel_tools: int | None,
        setup: RunSetup | None = None,
    ) -> LoopOutcome:
        setup = setup or RunSetup()
        if setup.history is not None:
            recorder.record(setup.history.step, time=utc_now())
        try:
            tools = await tool_provider.resolve([*agent.tools, *(f"agents/{name}" for name in agent.sub_agents)])
        except ToolResolutionError as exc:
            reason = ErrorReason.TOOL_SERVER_UNAVAILABLE if exc.unavailable else ErrorReason.TOOL_NOT_FOUND
            return LoopOutcome.failed(reason, str(exc))
        started = live.started
        assert started is not None, "a run executes only once it has left the queue"
        loop_input = LoopInput(
            agent=agent,
            prompt=prompt,
            model=started.model_name,
            tools=tuple(tools),
            max_parallel_tools=max_parallel_tools or self._limits.max_parallel_tools,
            telemetry=traced,
            history=setup.history_messages,
        )
        return await run_agent_loop(
            loop_input,
            setup.model_provider(provider),
            setup.tool_provider(tool_provider),
            recorder,
            live.control,
        )

    # --- sub-agents (engine.child_runs) ----------------------------------------------------------------------

    def _run_tools(self, live: LiveRun, base: Run, tree: RunNode, model_override: str) -> RunTools:
        """The run's MCP tools and its sub-agents, whose calls start child runs of this run."""
        children = ChildRuns(
            self._start_child,
            self._record_child_not_started,
            lambda child: self._end_child(child, live),
            live,
            base,
            tree,
            model_override,
        )
        return RunTools(self._tools, SubAgentTools(self._agents.get, children))

    def _end_child(self, child_id: str, parent: LiveRun) -> None:
        """The parent's call of a child was cancelled: the child ends as its parent does (INTERRUPTED when the
        service shuts down, else CANCELLED, saying why)."""
        child = self._live.get(child_id)
        if child is None or child.is_finished or child.task is None:
            return
        if self._shutting_down and not parent.cancel_requested:
            child.task.cancel()
            return
        child.cancel_message = f"the run was cancelled: its parent run {parent.run_id} ended first"
        with contextlib.suppress(RunAlreadyFinished):  # it ended on its own meanwhile
            self.cancel(child_id)

    async def _start_child(self, child: ChildStart) -> LiveRun:
        """A child run: the parent's user, labels and model override; its own agent, limits and run id."""
        parent = child.parent
        return await self.start(
            StartRun(
                agent_name=child.agent,
                task=child.task,
                user=parent.base.user,
                variables=child.variables,
                labels=dict(parent.base.labels),
                run_id=child.run_id,
                model=parent.model_override,
                parent=parent,
            )
        )

    async def _record_child_not_started(self, child: ChildStart, problem: str) -> None:
        """Stores the run a sub-agent's call reserved but could not start as FAILED (CHILD_NOT_STARTED, saying why),
        with its parent, so the call's child_run_id names a run (GetRun, include_descendants). Its task and variables
        are kept only when they are within the limits of a request (else they are what was refused)."""
        parent = child.parent
        task, variables = child.task, dict(child.variables)
        try:
            check_sizes(
                StartRun(agent_name=child.agent, task=task, user=parent.base.user, variables=variables), self._limits
            )
        except InvalidRequest:
            task, variables = "", {}
        agent = self._agents.get(child.agent)
        now = utc_now()
        run = Run(
            id=child.run_id,
            agent_name=child.agent,
            agent_version=agent.version if agent is not None else "",
            user=parent.base.user,
            task=task,
            labels=dict(parent.base.labels),
            variables=variables,
            status=RunStatus.FAILED,
            model_name=parent.model_override or (agent.model if agent is not None else ""),
            start_time=now,
            end_time=now,
            duration=timedelta(0),
            trace_id=parent.base.trace_id,
            session_id=parent.base.session_id,
            error=RunError(ErrorReason.CHILD_NOT_STARTED, f"the sub-agent's run could not start: {problem}"),
            **child_fields(parent),
        )
        try:
            await self._store_not_started(run)
        except Exception:
            log.exception(
                "could not store the sub-agent run that did not start",
                extra={"run_id": child.run_id, "parent_run_id": parent.base.id},
            )

    async def _store_not_started(self, run: Run) -> None:
        """Stores a sub-agent's run that did not start (through the outbox; the durable mode publishes it)."""
        await self._sink.record(run)

    def _cancelled_outcome(self, live: LiveRun) -> LoopOutcome:
        if live.cancel_requested:
            message = live.cancel_message or "the run was cancelled"
            return LoopOutcome(RunStatus.CANCELLED, error=RunError(ErrorReason.CANCELLED, message))
        if live.started is None:
            return LoopOutcome(
                RunStatus.INTERRUPTED,
                error=RunError(
                    ErrorReason.INTERRUPTED,
                    "the execution service shut down while the run waited in its queue; the run never started: "
                    "start it again",
                ),
            )
        return LoopOutcome(
            RunStatus.INTERRUPTED,
            error=RunError(ErrorReason.INTERRUPTED, "the execution service shut down while the run was in progress"),
        )

    async def _finish(
        self, live: LiveRun, base: Run, recorder: StepRecorder, outcome: LoopOutcome, traced: RunTelemetry
    ) -> None:
        # Scrubbed once: the error step, RunFinished and the stored run carry the same text.
        error = recorder.error(outcome.error) if outcome.error is not None else None
        await recorder.let_watchers_run()  # the last steps go out before the terminal record is built and stored
        end = utc_now()
        if live.started is None:
            base = _ended_in_queue(base, end)
        run = _terminal_run(base, recorder, outcome, error, end)
        if recorder.tree.children:
            run = dataclasses.replace(
                run,
                token_usage_with_descendants=recorder.tree.usage_with_descendants,
                cost_with_descendants=recorder.tree.cost_with_descendants(run.cost),
            )
        recorded = False
        try:
            await self._sink.record(run)
            recorded = await self._sink.wait_delivered(run.id, self._limits.publish_wait_s)
        except Exception:
            # The outbox is local; if it fails the run cannot be made durable. Say so loudly.
            log.exception("could not store the finished run in the outbox", extra={"run_id": run.id})
        traced.finish(run)
        live.finish(
            RunFinishedEvent(
                run_id=run.id,
                status=run.status,
                final_response=run.final_response,
                token_usage=run.token_usage,
                duration=end - base.start_time,
                end_time=end,
                steps_taken=run.steps_taken,
                tool_call_count=recorder.tool_calls,
                error=run.error,
                cost=run.cost,
                recorded=recorded,
                token_usage_with_descendants=run.token_usage_with_descendants,
                cost_with_descendants=run.cost_with_descendants,
            )
        )
        self._live.pop(live.run_id, None)
        self._finished[live.run_id] = live
        while len(self._finished) > self._limits.retain_finished:
            self._finished.popitem(last=False)
        log.info(
            "run finished",
            extra={
                "run_id": run.id,
                "status": run.status.value,
                "reason": run.error.reason if run.error else "",
                "total_tokens": run.token_usage.total_tokens,
                "duration_s": round((end - base.start_time).total_seconds(), 3),
            },
        )

    # --- control ---------------------------------------------------------------------------------------------

    def cancel(self, run_id: str, *, after_turn: bool = False, user: str | None = None) -> LiveRun:
        """Requests cancellation (never suspends, so it is safe from a handler that is itself being cancelled)."""
        live = self.find(run_id)
        if live is None or (user is not None and live.user != user):
            raise RunNotFound(run_id)
        if live.is_finished:
            status = live.finished.status.value if live.finished else ""
            raise RunAlreadyFinished(f"run {shown(run_id)} already finished with status {status}")
        if live.ending is not None:
            raise RunAlreadyFinished(
                f"run {shown(run_id)} already finished with status {live.ending.value} (its record is being written)"
            )
        self._request_cancel(live, after_turn)
        return live

    def _request_cancel(self, live: LiveRun, after_turn: bool) -> None:
        """Applies a cancel to a run found live and not ending."""
        live.cancel_requested = True
        if after_turn and not live.is_queued:  # a queued run has no turn to finish: it leaves the queue now
            live.control.stop_after_turn = True
        elif live.task is not None and live.interruptible:
            live.task.cancel()

    async def cancel_anywhere(self, run_id: str, *, after_turn: bool = False, user: str | None = None) -> FollowedRun:
        """`cancel`, and for a run this instance no longer holds in memory (finished long ago, or before a restart):
        RunAlreadyFinished when it is stored as finished and visible to `user`, RunStateUnknown when RunsService cannot
        say (UNAVAILABLE), else RunNotFound."""
        try:
            return self.cancel(run_id, after_turn=after_turn, user=user)
        except RunNotFound:
            if self._finished_run is not None and self.find(run_id) is None:
                found = await self._finished_run(run_id)
                if found is not None and (user is None or found[0] == user):
                    raise RunAlreadyFinished(
                        f"run {shown(run_id)} already finished with status {found[1].value}"
                    ) from None
            raise

    async def wait(self, live: LiveRun) -> None:
        if live.task is not None:
            await asyncio.shield(live.task)

    async def shutdown(self, grace_s: float) -> None:
        """Stops accepting runs; lets live runs finish for grace_s, then interrupts the rest (stored INTERRUPTED)."""
        self._shutting_down = True
        try:
            await self._let_runs_go(grace_s)
        finally:
            self._stopped = True

    async def _let_runs_go(self, grace_s: float) -> None:
        # Queued runs never start now: they end at once (INTERRUPTED), before a slot freed below could admit them.
        queued = [r.task for r in self._live.values() if r.task is not None and r.is_queued]
        for task in queued:
            task.cancel()
        if queued:
            await asyncio.wait(queued, timeout=10)
        tasks = [r.task for r in self._live.values() if r.task is not None]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)


class _QueueTimedOut(Exception):
    """The run waited in the admission queue longer than the queue timeout."""


def _started_event(run: Run) -> RunStartedEvent:
    return RunStartedEvent(
        run_id=run.id,
        agent_name=run.agent_name,
        agent_version=run.agent_version,
        model_name=run.model_name,
        start_time=run.start_time,
        trace_id=run.trace_id,
        user=run.user,
        session_id=run.session_id,
        forked_from=run.forked_from,
        parent_run_id=run.parent_run_id,
        depth=run.depth,
        root_run_id=run.root_run_id,
        parent_tool_call_id=run.parent_tool_call_id,
    )


def _ended_in_queue(base: Run, end: datetime) -> Run:
    """A run that ended in the queue (cancelled, queue timeout) starts and ends as it leaves it, having run 0 s: all
    its time since it entered the queue is its wait."""
    entered = base.start_time - (base.queue_duration or timedelta(0))
    return dataclasses.replace(base, start_time=end, queue_duration=end - entered)


def _terminal_run(
    base: Run, recorder: StepRecorder, outcome: LoopOutcome, error: RunError | None, end: datetime
) -> Run:
    """The RUNNING record `base` (identity, request, composition) with how the run ended."""
    steps = tuple(recorder.steps)
    usage: TokenUsage = recorder.usage
    return dataclasses.replace(
        base,
        status=outcome.status,
        error=error,
        final_response=recorder.scrub_final(outcome.final_response),
        end_time=end,
        duration=end - base.start_time,
        token_usage=usage,
        cost=price_steps(base.model_name, steps),
        steps_taken=recorder.model_calls,
        tools_used=recorder.tools_used,
        execution_steps=steps,
        tool_calls=tool_calls_from_steps(steps),
        max_context_window_used=recorder.max_context_window_used,
        session_id=base.session_id,
        forked_from=base.forked_from,
        queue_duration=base.queue_duration,
    )
