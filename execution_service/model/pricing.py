"""The cost of a run's token usage, from genai-prices' offline price table.

Gemini bills thinking tokens as output and tool-use prompt tokens as input; promptTokenCount already includes
cached tokens, which genai-prices charges at the cache-read rate. A run is priced call by call (`price_steps`):
tiered prices apply per request (Gemini 2.5 Pro's and 3 Pro's above 200k prompt tokens), and the calls a fork
replays keep their own model.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
from collections.abc import Iterable
from decimal import Decimal

from genai_prices import Usage, calc_price

from agentrun_core.domain import Cost, ExecutionStep, ModelCall, TokenUsage

logger = logging.getLogger(__name__)

PROVIDER_ID = "google"
UNPRICED_MODELS = frozenset({"test", "test-model"})


@functools.cache
def price_table_version() -> str:
    return f"genai-prices {importlib.metadata.version('genai-prices')}"


def price_run(model: str, usage: TokenUsage) -> Cost | None:
    """USD cost of `usage` on `model`; None for the test model and for models the price table does not know."""
    model_ref = model.removeprefix("googleai/").removeprefix("models/")
    if not model_ref or model_ref in UNPRICED_MODELS:
        return None
    priced = Usage(
        input_tokens=usage.input_tokens + usage.tool_use_prompt_tokens,
        output_tokens=usage.output_tokens + usage.thinking_tokens,
        cache_read_tokens=usage.cached_tokens,
    )
    try:
        price = calc_price(priced, model_ref=model_ref, provider_id=PROVIDER_ID)
    except LookupError as exc:
        logger.info("no price for model %r (%s): cost left unset", model_ref, exc)
        return None
    return Cost(amount=price.total_price, currency_code="USD", price_table_version=price_table_version())


def price_steps(run_model: str, steps: Iterable[ExecutionStep]) -> Cost | None:
    """The cost of a run: each model call that used tokens priced on its own model with its own usage, summed.
    None when one of them has no price (a partial sum would understate the bill) or, without such calls, when the
    run's model has none."""
    calls = [step.payload for step in steps if isinstance(step.payload, ModelCall)]
    used = [call for call in calls if call.usage != TokenUsage()]
    if not used:
        return price_run(run_model, TokenUsage())
    total = Decimal(0)
    for call in used:
        cost = price_run(call.model or run_model, call.usage)
        if cost is None:
            return None
        total += cost.amount
    return Cost(amount=total, currency_code="USD", price_table_version=price_table_version())
