"""LLM models: prices, output speed, and the cost of a call."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

__all__ = ["LLM_ERRORS", "MAX_INPUT_TOKENS", "MODEL_PRICES", "MODEL_RATES", "MODEL_TPS", "llm_cost"]

MODEL_PRICES: Final[Mapping[str, tuple[float, float]]] = {
    # USD per million tokens: (input, output)
    "gemini-2.0-flash": (0.10, 0.40),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1-mini": (0.40, 1.60),
    "claude-3-5-haiku": (0.80, 4.00),
    "gemini-2.5-pro": (1.25, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4o": (2.50, 10.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
}
"""USD per million tokens, ``(input, output)``, by model."""

MODEL_TPS: Final[Mapping[str, float]] = {
    # output tokens per second, for LLM latency
    "gemini-2.0-flash": 180.0,
    "gpt-4o-mini": 110.0,
    "gpt-4.1-mini": 100.0,
    "claude-3-5-haiku": 90.0,
    "gemini-2.5-pro": 80.0,
    "gpt-4.1": 75.0,
    "gpt-4o": 80.0,
    "claude-sonnet-4": 65.0,
    "claude-opus-4": 35.0,
}
"""Output tokens per second, by model (an LLM call's latency)."""

MODEL_RATES: Final[Mapping[str, tuple[float, float, float]]] = {
    m: (pin / 1e6, pout / 1e6, 1000.0 / MODEL_TPS[m]) for m, (pin, pout) in MODEL_PRICES.items()
}
"""``model -> (USD per input token, USD per output token, ms per output token)``."""

MAX_INPUT_TOKENS: Final = 200_000
"""The context limit."""

LLM_ERRORS: Final = (
    "429 rate_limit_exceeded: too many tokens per minute",
    "529 overloaded_error: the model is overloaded",
    "500 internal server error from the provider",
    "timeout after 120s waiting for the model",
)


def llm_cost(model: str, input_tokens: int, output_tokens: int) -> float:
    """Cost in USD of one LLM call at :data:`MODEL_PRICES`.

    Examples
    --------
    >>> llm_cost("gpt-4o", 1_000_000, 100_000)
    3.5
    """
    price_in, price_out = MODEL_PRICES[model]
    return (input_tokens * price_in + output_tokens * price_out) / 1e6
