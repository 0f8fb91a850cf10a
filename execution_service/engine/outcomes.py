"""How a run ends: one small function per way a turn can end it. Each returns a LoopOutcome (or None: go on)."""

from __future__ import annotations

from dataclasses import dataclass

from agentrun_core.domain import ErrorReason, RunError, RunStatus
from execution_service.engine.run_tree import BudgetExceeded
from execution_service.model.base import ModelError, ModelResponse

# Finish reasons (google.genai.types.FinishReason) that mean the provider withheld or refused the answer.
BLOCKED_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
        "ESCALATION",
    }
)
# Finish reasons of a turn that may be the final answer (absent or unspecified too); it still needs text.
ANSWER_FINISH_REASONS = frozenset({"STOP", "", "FINISH_REASON_UNSPECIFIED"})


@dataclass(frozen=True, slots=True)
class LoopOutcome:
    """How the loop ended. `final_response` is the answer of a COMPLETED run, and the text a MAX_TOKENS run was cut
    at (kept so a user sees what was cut)."""

    status: RunStatus
    final_response: str = ""
    error: RunError | None = None

    @classmethod
    def failed(cls, reason: ErrorReason | str, message: str, final_response: str = "") -> LoopOutcome:
        return cls(RunStatus.FAILED, final_response=final_response, error=RunError(reason=str(reason), message=message))


def cancelled_after_turn() -> LoopOutcome:
    return LoopOutcome(RunStatus.CANCELLED, error=RunError(ErrorReason.CANCELLED, "cancelled after the current turn"))


def max_steps_exceeded(max_steps: int) -> LoopOutcome:
    return LoopOutcome.failed(
        ErrorReason.MAX_STEPS_EXCEEDED,
        f"the agent made {max_steps} model calls (limits.max_steps) without giving a final answer",
    )


def model_failed(error: ModelError) -> LoopOutcome:
    return LoopOutcome.failed(error.reason, error.describe())


def after_model_turn(response: ModelResponse, exceeded: BudgetExceeded | None) -> LoopOutcome | None:
    """How the run ends after this model turn (`exceeded`: the token budget its tree went over, this turn
    included), or None when the loop goes on with the turn's function calls."""
    ended = prompt_blocked(response) or over_token_budget(exceeded)
    if ended is not None or response.function_calls:
        return ended
    return answered(response)


def prompt_blocked(response: ModelResponse) -> LoopOutcome | None:
    if not response.blocked_reason:
        return None
    return LoopOutcome.failed(
        ErrorReason.PROMPT_BLOCKED,
        f"the model provider blocked the prompt: {response.blocked_reason}{_provider_says(response)}",
    )


def over_token_budget(exceeded: BudgetExceeded | None) -> LoopOutcome | None:
    if exceeded is None:
        return None
    if exceeded.own:
        whose = " (its sub-agents' included)" if exceeded.with_descendants else ""
        message = (
            f"the run used {exceeded.used} tokens{whose}, over its budget of {exceeded.budget} (limits.token_budget)"
        )
    else:
        message = (
            f"the run's tree used {exceeded.used} tokens, over the budget of {exceeded.budget} of its ancestor run "
            f"{exceeded.run_id} (limits.token_budget of agent {exceeded.agent!r}, which covers its sub-agents)"
        )
    return LoopOutcome.failed(ErrorReason.TOKEN_BUDGET_EXCEEDED, message)


def answered(response: ModelResponse) -> LoopOutcome:
    """A turn without function calls: the final answer, or why it is not one."""
    reason = response.finish_reason
    if reason == "MAX_TOKENS":
        return cut_at_max_tokens(response)
    if reason in BLOCKED_FINISH_REASONS:
        return LoopOutcome.failed(
            ErrorReason.RESPONSE_BLOCKED,
            f"the model provider withheld the answer (finish reason {reason}){_provider_says(response)}",
        )
    if reason not in ANSWER_FINISH_REASONS:
        return LoopOutcome.failed(
            ErrorReason.MODEL_FINISH_REASON,
            f"the model ended its turn with finish reason {reason} and no function calls{_provider_says(response)}",
        )
    if not response.text.strip():
        return empty_answer(response)
    return LoopOutcome(RunStatus.COMPLETED, final_response=response.text)


def cut_at_max_tokens(response: ModelResponse) -> LoopOutcome:
    """FAILED with MAX_TOKENS, keeping the text the model did produce as the run's final response."""
    kept = f"; the {len(response.text)} characters it produced are the run's final_response" if response.text else ""
    return LoopOutcome.failed(
        ErrorReason.MAX_TOKENS,
        "the model stopped at its output token limit (config.maxOutputTokens) before finishing its answer"
        + kept
        + _provider_says(response),
        final_response=response.text,
    )


def empty_answer(response: ModelResponse) -> LoopOutcome:
    if response.no_candidates:
        what = "no candidate at all (and no reason for blocking the prompt)"
    else:
        what = f"no text and no function calls (finish reason {response.finish_reason or 'absent'})"
    return LoopOutcome.failed(
        ErrorReason.MODEL_EMPTY_RESPONSE, f"the model answered with {what}{_provider_says(response)}"
    )


def _provider_says(response: ModelResponse) -> str:
    return f"; the provider said: {response.finish_message}" if response.finish_message else ""
