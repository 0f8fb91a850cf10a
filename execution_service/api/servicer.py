"""ExecutionService gRPC servicer: translates requests to RunManager calls and events back to messages."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Mapping
from contextlib import aclosing
from typing import Any

import grpc
from agentrun.execution.v1 import execution_service_pb2 as pb
from agentrun.execution.v1 import execution_service_pb2_grpc as pb_grpc

from agentrun_core.identity import current_identity
from agentrun_core.ids import run_id_problem
from execution_service.agents.registry import AgentRegistry
from execution_service.agents.tool_problems import tool_problems
from execution_service.api.convert import after_turn, agent_to_pb, event_response, fork_request, problem_to_pb
from execution_service.api.errors import abort_for
from execution_service.api.limits import CallLimits, RateLimiter, StreamLimiter
from execution_service.api.schedules_convert import schedule_view_to_pb
from execution_service.engine.events import RunEvent
from execution_service.engine.live_run import FollowedRun, resumed
from execution_service.engine.manager import RunManager
from execution_service.engine.run_request import StartRun
from execution_service.errors import (
    ExecutionError,
    InvalidRequest,
    PermissionDenied,
    RunAlreadyFinished,
    RunNotFound,
    Unimplemented,
)
from execution_service.schedules.service import Schedules, ScheduleView

log = logging.getLogger(__name__)


def _visible_user() -> str | None:
    """The user whose runs the caller may touch; None for admins."""
    identity = current_identity.get()
    return None if identity.sees_everything else identity.user


def _check_run_id(run_id: str) -> None:
    problem = run_id_problem(run_id)
    if problem is not None:
        raise InvalidRequest("run_id", problem)


class ExecutionServicer(pb_grpc.ExecutionServiceServicer):
    def __init__(
        self,
        manager: RunManager,
        agents: AgentRegistry,
        limits: CallLimits | None = None,
        schedules: Schedules | None = None,
        servers_down: Callable[[], Mapping[str, str]] | None = None,
    ) -> None:
        self._manager = manager
        self._agents = agents
        self._schedules = schedules
        # The MCP servers that are down now, with their last errors (ListAgents' Agent.tool_problems).
        self._servers_down = servers_down or dict
        limits = limits or CallLimits()
        self._streams = StreamLimiter(limits.max_streams_per_user)
        self._rate = RateLimiter(limits.rate_per_minute, limits.burst)
        # Cancellations of disconnected clients' runs, in flight (_cancel_in_background).
        self._cancelling: set[asyncio.Task[None]] = set()

    async def ExecuteAgent(
        self, request: pb.ExecuteAgentRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ExecuteAgentResponse]:
        user = current_identity.get().user
        try:
            self._rate.acquire(user)
            self._streams.acquire(user)
        except ExecutionError as exc:
            log.info("ExecuteAgent refused", extra={"user": user, "reason": exc.reason})
            await abort_for(context, exc)
            return
        try:
            try:
                live = await self._start(
                    self._manager.start_or_attach(
                        StartRun(
                            agent_name=request.agent_name,
                            task=request.task,
                            user=user,
                            variables=dict(request.variables),
                            labels=dict(request.labels),
                            run_id=request.run_id,
                            model=request.model,
                            session_id=request.session_id,
                        )
                    ),
                    detach=request.detach,
                )
            except ExecutionError as exc:
                await abort_for(context, exc)
                return
            async with aclosing(self._follow(live, live.follow(0), detach=request.detach)) as followed:
                async for event in followed:
                    yield event_response(pb.ExecuteAgentResponse, event)
        finally:
            self._streams.release(user)

    async def ForkRun(
        self, request: pb.ForkRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ForkRunResponse]:
        user = current_identity.get().user
        try:
            fork = fork_request(request, user, _visible_user())
            self._rate.acquire(user)
            self._streams.acquire(user)
        except ExecutionError as exc:
            log.info("ForkRun refused", extra={"user": user, "reason": exc.reason})
            await abort_for(context, exc)
            return
        try:
            try:
                live = await self._start(self._manager.fork(fork), detach=request.detach)
            except ExecutionError as exc:
                await abort_for(context, exc)
                return
            async with aclosing(self._follow(live, live.follow(0), detach=request.detach)) as followed:
                async for event in followed:
                    yield event_response(pb.ForkRunResponse, event)
        finally:
            self._streams.release(user)

    async def WatchRun(
        self, request: pb.WatchRunRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchRunResponse]:
        user = current_identity.get().user
        try:
            live = await self._find_visible(request.run_id)
            if request.from_sequence < 0:
                raise InvalidRequest("from_sequence", f"must not be negative, got {request.from_sequence}")
            events = resumed(live, request.from_sequence, request.from_run_id, request.last_received)
            self._streams.acquire(user)
        except ExecutionError as exc:
            await abort_for(context, exc)
            return
        try:
            async with aclosing(self._follow(live, events, detach=True)) as followed:
                async for event in followed:
                    yield event_response(pb.WatchRunResponse, event)
        finally:
            self._streams.release(user)

    async def CancelRun(self, request: pb.CancelRunRequest, context: grpc.aio.ServicerContext) -> pb.CancelRunResponse:
        try:
            _check_run_id(request.run_id)  # never forward an invalid id to RunsService, nor log it
            await self._manager.cancel_anywhere(
                request.run_id, after_turn=after_turn(request.mode), user=_visible_user()
            )
        except ExecutionError as exc:
            await abort_for(context, exc)
        return pb.CancelRunResponse(run_id=request.run_id)

    async def ListAgents(
        self, request: pb.ListAgentsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAgentsResponse:
        await asyncio.to_thread(self._agents.reload)
        down = self._servers_down()
        return pb.ListAgentsResponse(
            agents=[agent_to_pb(a, tool_problems(a, down)) for a in self._agents.agents()],
            errors=[problem_to_pb(p) for p in self._agents.problems()],
        )

    async def ListSchedules(
        self, request: pb.ListSchedulesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListSchedulesResponse:
        try:
            views = await self._schedule_service().listed(request.agent_name, request.next_fire_time_count)
        except ExecutionError as exc:
            await abort_for(context, exc)
            raise AssertionError("unreachable") from None
        return pb.ListSchedulesResponse(schedules=[schedule_view_to_pb(v) for v in views])

    async def PauseSchedule(
        self, request: pb.PauseScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.PauseScheduleResponse:
        views = await self._set_paused(request.agent_name, request.schedule_name, True, context)
        return pb.PauseScheduleResponse(schedules=[schedule_view_to_pb(v) for v in views])

    async def ResumeSchedule(
        self, request: pb.ResumeScheduleRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResumeScheduleResponse:
        views = await self._set_paused(request.agent_name, request.schedule_name, False, context)
        return pb.ResumeScheduleResponse(schedules=[schedule_view_to_pb(v) for v in views])

    async def _set_paused(
        self, agent_name: str, schedule_name: str, paused: bool, context: grpc.aio.ServicerContext
    ) -> list[ScheduleView]:
        identity = current_identity.get()
        verb = "pause" if paused else "resume"
        try:
            if not identity.sees_everything:  # admins (and the service identity, "like admin")
                raise PermissionDenied(f"only admins may {verb} schedules (they start runs for every user)")
            service = self._schedule_service()
            views = await service.set_paused(agent_name, schedule_name, paused=paused, by=identity.user)
        except ExecutionError as exc:
            await abort_for(context, exc)
            raise AssertionError("unreachable") from None
        log.info(f"schedules {verb}d", extra={"user": identity.user, "schedules": [v.spec.key for v in views]})
        return views

    def _schedule_service(self) -> Schedules:
        if self._schedules is None:
            raise Unimplemented("schedules are not available on this execution service")
        return self._schedules

    async def _find_visible(self, run_id: str) -> FollowedRun:
        _check_run_id(run_id)
        live = await self._manager.locate(run_id)
        user = _visible_user()
        if live is None or (user is not None and live.user != user):
            raise RunNotFound(run_id)
        return live

    async def _start(self, starting: Coroutine[Any, Any, FollowedRun], *, detach: bool) -> FollowedRun:
        """Starts a run in a task of its own, so a client that goes away meanwhile (its deadline, a closed stream)
        cannot cut the start in half (a run recorded RUNNING whose task never began, an admission record without its
        workflow). The run of a client that went away without detaching is then cancelled, as when it goes later."""
        start = asyncio.ensure_future(starting)
        try:
            return await asyncio.shield(start)
        except asyncio.CancelledError:
            start.add_done_callback(functools.partial(self._started_for_nobody, detach=detach))
            raise

    def _started_for_nobody(self, start: asyncio.Future[FollowedRun], *, detach: bool) -> None:
        if start.cancelled():
            return
        error = start.exception()
        if error is not None:
            log.info("a run was not started after its client went away", extra={"why": str(error)})
            return
        run_id = start.result().run_id
        if detach:
            log.info("the client went away while its detached run started; the run goes on", extra={"run_id": run_id})
            return
        log.info("client disconnected while its run started: cancelling it", extra={"run_id": run_id})
        self._cancel_in_background(run_id)

    async def _follow(
        self, live: FollowedRun, events: AsyncIterator[RunEvent], *, detach: bool
    ) -> AsyncGenerator[RunEvent]:
        """Streams the run's events (`events`: its `follow`); a client that goes away cancels the run unless it
        detached: the handler is cancelled while it waits here for the next event (CancelledError) or while gRPC
        sends the last one (the handler then closes this generator: GeneratorExit). The streams this service ends
        once it has stopped its runs cancel nothing: a durable run goes on elsewhere, where the client can watch it
        (an embedded one has ended INTERRUPTED)."""
        try:
            async for event in events:
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            if not detach and not live.is_finished and not self._manager.stopped:
                log.info("client disconnected: cancelling its run", extra={"run_id": live.run_id})
                try:
                    self._manager.cancel(live.run_id)
                except RunAlreadyFinished:
                    pass  # it ended as the client went away (is_finished lags the run's own end a little)
                except RunNotFound:
                    # Durable mode: the run waits in the shared queue or executes on another replica.
                    self._cancel_in_background(live.run_id)
            raise

    def _cancel_in_background(self, run_id: str) -> None:
        """Cancels a disconnected client's run (held here or by another replica), from a handler being cancelled or
        a callback (so in a task of its own)."""

        async def cancel() -> None:
            try:
                await self._manager.cancel_anywhere(run_id)
                log.info("client disconnected: its run is cancelled", extra={"run_id": run_id})
            except ExecutionError as exc:
                log.info("could not cancel the disconnected client's run", extra={"run_id": run_id, "why": str(exc)})

        task = asyncio.create_task(cancel(), name=f"cancel-abandoned-{run_id}")
        self._cancelling.add(task)
        task.add_done_callback(self._cancelling.discard)
