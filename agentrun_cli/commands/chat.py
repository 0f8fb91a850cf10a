"""`agentrun chat AGENT`: a conversation in the terminal. Each line you type is a run of AGENT in one session
(ExecuteAgent with session_id), so the agent receives the conversation so far; each run streams like
`agentrun run`. Ctrl-D (end of input) ends the conversation; Ctrl-C during a run cancels that run only."""

from __future__ import annotations

import uuid
from typing import Annotated

import typer
from agentrun.execution.v1 import execution_service_pb2 as ex_pb2
from agentrun.runs.v1 import run_pb2

from agentrun_cli import output
from agentrun_cli.client import ExecutionClient
from agentrun_cli.commands.common import settings_of, usage_error
from agentrun_cli.errors import handle_errors
from agentrun_cli.params import ParamError, parse_pairs
from agentrun_cli.progress import RunProgress, StreamEvent
from agentrun_cli.streaming import BackgroundStream, cancel_and_drain, follow
from agentrun_cli.views import choose_view

PROMPT = "you> "


def new_session_id() -> str:
    return f"chat-{uuid.uuid4()}"


@handle_errors
def chat_command(
    ctx: typer.Context,
    agent: Annotated[str, typer.Argument(help="The agent to talk to (its .prompt file name).")],
    session: Annotated[
        str | None, typer.Option("--session", help="Continue this session (default: a new one, printed first).")
    ] = None,
    var: Annotated[list[str] | None, typer.Option("--var", help="Template variable KEY=VALUE (repeatable).")] = None,
    model: Annotated[str | None, typer.Option(help="Model override for every run of the conversation.")] = None,
) -> None:
    """Talk to an agent: every line is a run in one session, streamed as it happens. Ctrl-D ends."""
    try:
        variables = parse_pairs(var, "--var")
    except ParamError as exc:
        raise usage_error(exc) from None
    session_id = session or new_session_id()
    output.print_line(f"session {session_id} · {agent} · Ctrl-D to end")
    client = ExecutionClient(settings_of(ctx))
    runs = 0
    try:
        while True:
            try:
                line = input(PROMPT)
            except EOFError:
                output.print_line("")
                break
            if not line.strip():
                continue
            request = ex_pb2.ExecuteAgentRequest(
                agent_name=agent, task=line, variables=variables, model=model or "", session_id=session_id
            )
            runs += 1
            _one_turn(client, request)
    except KeyboardInterrupt:
        output.print_line("")
    finally:
        client.close()
    if runs == 0 and session is None:  # a new session exists once a run is made in it
        output.print_line("nothing was asked: no run was made, so there is no session to continue")
        return
    output.print_line(f"session {session_id} · continue with `agentrun chat {agent} --session {session_id}`")


def _one_turn(client: ExecutionClient, request: ex_pb2.ExecuteAgentRequest) -> None:
    """One run of the conversation, streamed; the agent's answer (or how the run ended) is its last line."""
    stream: BackgroundStream[StreamEvent] = BackgroundStream(client.execute(request))
    progress = RunProgress()
    view = choose_view(as_json=False, console=output.console())
    with view:
        try:
            follow(stream, view, progress)
        except KeyboardInterrupt:
            cancel_and_drain(client, stream, view, progress)
    finished = progress.finished
    if finished is not None and finished.status == run_pb2.RUN_STATUS_COMPLETED:
        output.print_line(f"{request.agent_name}> {finished.final_response}")
    else:
        view.summary(progress)
