from __future__ import annotations

from decimal import Decimal

from agentrun_core.domain import TokenUsage
from execution_service.model.pricing import price_run


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
