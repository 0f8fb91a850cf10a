"""Protobuf <-> ExecutionService domain values."""

from __future__ import annotations

from typing import Any, TypeVar, assert_never

import orjson
from agentrun.execution.v1 import execution_service_pb2 as pb
from agentrun.runs.v1 import run_pb2

from agentrun_core.ids import run_id_problem
from agentrun_core.proto_convert import (
    cost_to_pb,
    duration_to_pb,
    run_error_to_pb,
    run_status_to_pb,
    step_to_pb,
    timestamp_to_pb,
    token_usage_to_pb,
)
from execution_service.agents.loader import SUB_AGENT_PREFIX
from execution_service.agents.spec import AgentLoadProblem, AgentSpec
from execution_service.api.schedules_convert import schedule_spec_to_pb
from execution_service.engine.composition import ForkRequest
from execution_service.engine.events import (
    EncodedEvent,
    RunEvent,
    RunFinishedEvent,
    RunQueuedEvent,
    RunStartedEvent,
    StepEvent,
)
from execution_service.errors import InvalidRequest
from execution_service.history.replay import ForkOverrides

EventResponse = TypeVar("EventResponse", pb.ExecuteAgentResponse, pb.WatchRunResponse, pb.ForkRunResponse)


def event_response(cls: type[EventResponse], event: RunEvent) -> EventResponse:
    """The ExecuteAgentResponse or WatchRunResponse carrying `event`. A step the live-steps journal serialized is
    parsed into place from those bytes (the step is not converted a second time)."""
    if isinstance(event, StepEvent) and event.encoded is not None:
        message = cls()
        message.step.MergeFromString(event.encoded)
        return message
    if isinstance(event, EncodedEvent):
        return cls.FromString(event.data)
    return cls(**event_fields(event))


def event_fields(event: RunEvent) -> dict[str, Any]:
    """The oneof field for an event, shared by ExecuteAgentResponse, WatchRunResponse and ForkRunResponse."""
    match event:
        case RunQueuedEvent():
            queued = pb.RunQueued(
                run_id=event.run_id,
                agent_name=event.agent_name,
                agent_version=event.agent_version,
                model_name=event.model_name,
                enqueue_time=timestamp_to_pb(event.enqueue_time),
                position=event.position,
                queue_name=event.queue_name,
                trace_id=event.trace_id,
                user=event.user,
            )
            if event.queue_timeout is not None:
                queued.queue_timeout.CopyFrom(duration_to_pb(event.queue_timeout))
            return {"run_queued": queued}
        case RunStartedEvent():
            started = pb.RunStarted(
                run_id=event.run_id,
                agent_name=event.agent_name,
                agent_version=event.agent_version,
                model_name=event.model_name,
                start_time=timestamp_to_pb(event.start_time),
                trace_id=event.trace_id,
                user=event.user,
                session_id=event.session_id,
                parent_run_id=event.parent_run_id,
                depth=event.depth,
                replica=event.replica,
                root_run_id=event.root_run_id,
                parent_tool_call_id=event.parent_tool_call_id,
            )
            if event.forked_from is not None:
                started.forked_from.CopyFrom(
                    run_pb2.ForkOrigin(run_id=event.forked_from.run_id, sequence=event.forked_from.sequence)
                )
            return {"run_started": started}
        case StepEvent():
            return {"step": step_to_pb(event.step)}
        case RunFinishedEvent():
            finished = pb.RunFinished(
                run_id=event.run_id,
                status=run_status_to_pb(event.status),
                final_response=event.final_response,
                token_usage=token_usage_to_pb(event.token_usage),
                duration=duration_to_pb(event.duration),
                steps_taken=event.steps_taken,
                tool_call_count=event.tool_call_count,
                end_time=timestamp_to_pb(event.end_time),
                recorded=event.recorded,
            )
            if event.error is not None:
                finished.error.CopyFrom(run_error_to_pb(event.error))
            if event.cost is not None:
                finished.cost.CopyFrom(cost_to_pb(event.cost))
            if event.token_usage_with_descendants is not None:
                finished.token_usage_with_descendants.CopyFrom(token_usage_to_pb(event.token_usage_with_descendants))
            if event.cost_with_descendants is not None:
                finished.cost_with_descendants.CopyFrom(cost_to_pb(event.cost_with_descendants))
            return {"run_finished": finished}
        case EncodedEvent():
            return {}  # parsed whole by event_response
        case _:
            assert_never(event)


def after_turn(mode: int) -> bool:
    if mode in (pb.CANCEL_MODE_UNSPECIFIED, pb.CANCEL_MODE_IMMEDIATE):
        return False
    if mode == pb.CANCEL_MODE_AFTER_TURN:
        return True
    raise InvalidRequest("mode", f"unknown CancelMode value {mode}")


def agent_to_pb(agent: AgentSpec, tool_problems: list[str] | None = None) -> pb.Agent:
    return pb.Agent(
        tool_problems=tool_problems or [],
        name=agent.name,
        version=agent.version,
        model=agent.model,
        description=agent.description,
        tools=[*agent.tools, *(f"{SUB_AGENT_PREFIX}{name}" for name in agent.sub_agents)],
        sub_agents=list(agent.sub_agents),
        path=str(agent.path),
        input_schema_json=orjson.dumps(agent.input_schema).decode() if agent.input_schema else "",
        limits=pb.AgentLimits(
            max_steps=agent.limits.max_steps,
            run_timeout=_seconds(agent.limits.run_timeout_s),
            tool_timeout=_seconds(agent.limits.tool_timeout_s),
            token_budget=agent.limits.token_budget,
            tool_result_bytes=agent.limits.tool_result_bytes,
            max_depth=agent.limits.max_depth,
        ),
        schedules=[schedule_spec_to_pb(s) for s in agent.schedules],
        session_history_tokens=agent.session.history_tokens,
    )


def _seconds(value: float) -> Any:
    from datetime import timedelta

    return duration_to_pb(timedelta(seconds=value))


def problem_to_pb(problem: AgentLoadProblem) -> pb.AgentLoadError:
    return pb.AgentLoadError(path=str(problem.path), message=problem.message)


def fork_request(request: pb.ForkRunRequest, user: str, visible_user: str | None) -> ForkRequest:
    """The fork a ForkRunRequest asks for. Raises InvalidRequest for a field that is wrong on its own."""
    problem = run_id_problem(request.run_id)
    if problem is not None:
        raise InvalidRequest("run_id", problem)
    overrides = request.overrides
    config: dict[str, Any] = {}
    if overrides.generation_config_json:
        try:
            config = orjson.loads(overrides.generation_config_json)
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("overrides.generation_config_json", f"is not JSON: {exc}") from None
        if not isinstance(config, dict):
            raise InvalidRequest("overrides.generation_config_json", "must be a JSON object of generation settings")
    if overrides.task and not overrides.task.strip():
        raise InvalidRequest("overrides.task", "must not be blank (leave it empty to keep the original task)")
    return ForkRequest(
        run_id=request.run_id,
        from_sequence=request.from_sequence,
        user=user,
        visible_user=visible_user,
        overrides=ForkOverrides(
            model=overrides.model,
            generation_config=config,
            task=overrides.task,
            tool_results=dict(overrides.tool_results),
        ),
    )
