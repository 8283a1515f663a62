"""What a call cost: the deployment's per-token prices, else the genai-prices catalogue.

Prompt tokens count every input token, those read from and written to a prompt cache too
(OpenAI's and LiteLLM's convention, which the provider adapters follow); the cached and
cache-written ones are priced at their own rates. genai-prices knows each provider by
LiteLLM's prefix (`anthropic`, `gemini`, `vertex_ai`, `bedrock`, `azure`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from genai_prices import Usage, calc_price

from tollgate_shared.config import LitellmParams

log = logging.getLogger(__name__)

ZERO = Decimal(0)


@dataclass(frozen=True)
class Cost:
    spend: Decimal
    source: str  # "config", "genai-prices" or "unknown"
    warning: str | None = None


@lru_cache(maxsize=4096)
def _catalogue_price(
    model: str,
    provider: str,
    input_tokens: int,
    output_tokens: int,
    cached_tokens: int,
    cache_write_tokens: int = 0,
) -> Decimal | None:
    try:
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cached_tokens or None,
            cache_write_tokens=cache_write_tokens or None,
        )
        return Decimal(calc_price(usage, model_ref=model, provider_id=provider).total_price)
    except LookupError:
        return None


def _write_price(params: LitellmParams) -> Decimal | None:
    """LiteLLM's `cache_creation_input_token_cost`."""
    return params.cache_creation_input_token_cost


def cost_of(
    params: LitellmParams,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int = 0,
    cache_write_tokens: int = 0,
) -> Cost:
    """Cost in USD as Decimal; an unknown model costs 0 with a warning, never an error."""
    if params.input_cost_per_token is not None or params.output_cost_per_token is not None:
        cached = min(cached_tokens, prompt_tokens)
        written = min(cache_write_tokens, prompt_tokens - cached)
        cache_price = params.cache_read_input_token_cost
        write_price = _write_price(params)
        in_price = params.input_cost_per_token or ZERO
        prompt_cost = prompt_tokens * in_price
        if cache_price is not None and cached:
            prompt_cost += cached * (cache_price - in_price)
        if write_price is not None and written:
            prompt_cost += written * (write_price - in_price)
        spend = prompt_cost + completion_tokens * (params.output_cost_per_token or ZERO)
        return Cost(spend, "config")
    price = _catalogue_price(
        params.upstream_model,
        params.provider,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        cache_write_tokens,
    )
    if price is None:
        warning = (
            f"no price known for {params.provider}/{params.upstream_model}: cost recorded as 0; "
            "set input_cost_per_token/output_cost_per_token in litellm_params"
        )
        return Cost(ZERO, "unknown", warning)
    return Cost(price, "genai-prices")
