"""Hand-built protobuf runs and stream events for the CLI tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2
from google.protobuf import duration_pb2, timestamp_pb2

RUN_ID = "0193a5c4-7d2e-7b3a-9c1d-2e3f4a5b6c7d"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
START = datetime(2026, 11, 25, 13, 0, 0, tzinfo=UTC)


def ts(offset_s: float = 0.0) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(START + timedelta(seconds=offset_s))
    return value


def dur(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromTimedelta(timedelta(seconds=seconds))
    return value


def usage(inp: int, out: int, cached: int = 0, thinking: int = 0, tool_use: int = 0) -> run_pb2.TokenUsage:
    return run_pb2.TokenUsage(
        input_tokens=inp,
        output_tokens=out,
        cached_tokens=cached,
        thinking_tokens=thinking,
        tool_use_prompt_tokens=tool_use,
        total_tokens=inp + out + thinking,
    )


def clock_steps(run_id: str = RUN_ID) -> list[run_pb2.ExecutionStep]:
    return [
        run_pb2.ExecutionStep(
            run_id=run_id,
            sequence=1,
            time=ts(0.1),
            duration=dur(0.8),
            model_call=run_pb2.ModelCall(
                model="gemini-2.5-flash",
                usage=usage(1200, 30, cached=200, thinking=15),
                finish_reason="STOP",
                time_to_first_token=dur(0.21),
                function_call_count=1,
            ),
        ),
        run_pb2.ExecutionStep(
            run_id=run_id,
            sequence=2,
            time=ts(0.9),
            tool_call=run_pb2.ToolCallStarted(
                call_id="call-1",
                tool_name="get_current_time",
                server="time",
                arguments_json='{"timezone": "Europe/Paris"}',
            ),
        ),
        run_pb2.ExecutionStep(
            run_id=run_id,
            sequence=3,
            time=ts(0.912),
            duration=dur(0.012),
            tool_result=run_pb2.ToolCallFinished(
                call_id="call-1",
                tool_name="get_current_time",
                result_text='{"timezone": "Europe/Paris", "datetime": "2026-11-25T14:00:00+01:00"}',
                duration=dur(0.012),
                status=run_pb2.TOOL_CALL_STATUS_SUCCEEDED,
                original_size_bytes=70,
            ),
        ),
        run_pb2.ExecutionStep(
            run_id=run_id,
            sequence=4,
            time=ts(1.0),
            duration=dur(0.5),
            model_call=run_pb2.ModelCall(
                model="gemini-2.5-flash",
                usage=usage(1300, 25),
                finish_reason="STOP",
                text="It is 14:00 in Paris.",
            ),
        ),
        run_pb2.ExecutionStep(
            run_id=run_id,
            sequence=5,
            time=ts(1.5),
            final_response=run_pb2.FinalResponse(text="It is 14:00 (CET) on Wednesday in Paris."),
        ),
    ]


def clock_run(run_id: str = RUN_ID) -> run_pb2.Run:
    return run_pb2.Run(
        id=run_id,
        agent_name="clock",
        agent_version="sha256:0123456789abcdef0123456789abcdef",
        user="alice",
        task="What time is it in Paris?",
        labels={"team": "docs", "env": "dev"},
        status=run_pb2.RUN_STATUS_COMPLETED,
        final_response="It is 14:00 (CET) on Wednesday in Paris.",
        model_name="gemini-2.5-flash",
        start_time=ts(0),
        end_time=ts(1.5),
        duration=dur(1.5),
        token_usage=usage(2500, 55, cached=200, thinking=15, tool_use=40),
        cost=run_pb2.Cost(amount="0.001496", currency_code="USD", price_table_version="genai-prices 0.2.3"),
        steps_taken=2,
        tools_used=["get_current_time"],
        trace_id=TRACE_ID,
        execution_steps=clock_steps(run_id),
        tool_calls=[
            run_pb2.ToolCall(
                id="call-1",
                name="get_current_time",
                server="time",
                parameters_json='{"timezone": "Europe/Paris"}',
                result='{"timezone": "Europe/Paris", "datetime": "2026-11-25T14:00:00+01:00"}',
                duration=dur(0.012),
                status=run_pb2.TOOL_CALL_STATUS_SUCCEEDED,
                start_time=ts(0.9),
            )
        ],
    )


def failed_run(run_id: str = "0193a5c4-0000-7000-8000-000000000002") -> run_pb2.Run:
    return run_pb2.Run(
        id=run_id,
        agent_name="repo-reviewer",
        status=run_pb2.RUN_STATUS_FAILED,
        error=run_pb2.RunError(reason="MAX_STEPS_EXCEEDED", message="the run took more than 6 steps"),
        model_name="gemini-2.5-flash",
        start_time=ts(60),
        end_time=ts(90),
        duration=dur(30),
        token_usage=usage(9000, 800),
    )


def run_started(run_id: str = RUN_ID) -> ex_pb2.RunStarted:
    return ex_pb2.RunStarted(
        run_id=run_id,
        agent_name="clock",
        agent_version="sha256:0123456789abcdef",
        model_name="test",
        start_time=ts(0),
        trace_id=TRACE_ID,
        user="alice",
    )


def run_finished(run_id: str = RUN_ID, status: run_pb2.RunStatus = run_pb2.RUN_STATUS_COMPLETED) -> ex_pb2.RunFinished:
    return ex_pb2.RunFinished(
        run_id=run_id,
        status=status,
        final_response="It is 14:00 (CET) on Wednesday in Paris." if status == run_pb2.RUN_STATUS_COMPLETED else "",
        token_usage=usage(2500, 55, cached=200, thinking=15),
        duration=dur(1.5),
        steps_taken=2,
        tool_call_count=1,
        end_time=ts(1.5),
    )
