from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from agentrun_core.domain import Cost, ExecutionStep, ModelCall, TokenUsage
from execution_service.model.pricing import price_run, price_steps, price_table_version


def test_gemini_flash_figure_from_the_library_notes() -> None:
    cost = price_run("gemini-2.5-flash", TokenUsage(input_tokens=1000, cached_tokens=200, output_tokens=500))
    assert cost is not None
    assert cost.amount == Decimal("0.001496")
    assert cost.currency_code == "USD"
    assert cost.price_table_version == "genai-prices 0.2.3"


def test_thinking_tokens_are_billed_as_output_and_prefix_is_ignored() -> None:
    with_thoughts = price_run(
        "googleai/gemini-2.5-flash",
        TokenUsage(input_tokens=1000, cached_tokens=200, output_tokens=300, thinking_tokens=200),
    )
    assert with_thoughts is not None
    assert with_thoughts.amount == Decimal("0.001496")


def test_test_model_and_unknown_models_have_no_price() -> None:
    usage = TokenUsage(input_tokens=10, output_tokens=10, total_tokens=20)
    assert price_run("test", usage) is None
    assert price_run("test-model", usage) is None
    assert price_run("no-such-model-xyz", usage) is None


def _calls(*calls: tuple[str, int, int]) -> list[ExecutionStep]:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    return [
        ExecutionStep(
            run_id="r",
            sequence=i + 1,
            time=now,
            duration=timedelta(seconds=1),
            payload=ModelCall(model=model, usage=TokenUsage(input_tokens=prompt, output_tokens=out)),
        )
        for i, (model, prompt, out) in enumerate(calls)
    ]


def test_a_run_is_priced_call_by_call() -> None:
    """Gemini 2.5 Pro's input price doubles above 200k prompt tokens per request: three calls of 100k are three
    cheap requests, not one of 300k (the run's summed usage, which priced this run at 0.75045 USD)."""
    cost = price_steps("gemini-2.5-pro", _calls(*[("gemini-2.5-pro", 100_000, 10)] * 3))
    assert cost is not None and cost.amount == Decimal("0.3753")
    one = price_run("gemini-2.5-pro", TokenUsage(input_tokens=100_000, output_tokens=10))
    assert one is not None and one.amount == Decimal("0.1251")


def test_each_call_keeps_its_model_and_an_unpriced_one_leaves_the_cost_unknown() -> None:
    # A fork on gemini-3-pro-preview of a run that began on flash: the replayed flash call is priced as flash.
    flash = price_run("gemini-2.5-flash", TokenUsage(input_tokens=1000, output_tokens=100))
    pro = price_run("gemini-3-pro-preview", TokenUsage(input_tokens=2000, output_tokens=100))
    assert flash is not None and pro is not None
    forked = price_steps(
        "gemini-3-pro-preview", _calls(("gemini-2.5-flash", 1000, 100), ("gemini-3-pro-preview", 2000, 100))
    )
    assert forked is not None and forked.amount == flash.amount + pro.amount
    assert price_steps("gemini-2.5-flash", _calls(("gemini-2.5-flash", 10, 1), ("no-such-model-xyz", 10, 1))) is None
    # No call used tokens: the run's model says whether it has a price (zero) or none.
    assert price_steps("gemini-2.5-flash", []) == Cost(Decimal(0), "USD", price_table_version())
    assert price_steps("test", _calls(("test", 0, 0))) is None
