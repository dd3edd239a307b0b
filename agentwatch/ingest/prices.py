"""The model price table: what an LLM span cost when it does not say.

Prices are USD per million tokens, ``input`` and ``output``, by model. The shipped table
(``prices.toml`` beside this module) holds list prices; a TOML file of the same form
(``AGENTWATCH_OTLP_PRICES_FILE``) overrides and extends it.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SHIPPED_PRICES", "ModelPrice", "PriceError", "PriceTable", "load_prices"]

SHIPPED_PRICES = Path(__file__).with_name("prices.toml")
"""The price table shipped with agentwatch."""


class PriceError(ValueError):
    """A price file that cannot be used; the message names the file, the model and the reason."""


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million input and output tokens."""

    input: float
    output: float

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        """USD for one call."""
        return (input_tokens * self.input + output_tokens * self.output) / 1e6


class PriceTable:
    """Model prices with exact and versioned-name matching.

    Examples
    --------
    >>> table = PriceTable({"gpt-4o": ModelPrice(2.5, 10.0), "gpt-4o-mini": ModelPrice(0.15, 0.6)})
    >>> table.cost("gpt-4o-2024-08-06", 1_000_000, 100_000)
    3.5
    >>> table.price("openai/GPT-4o-mini-2024-07-18")
    ModelPrice(input=0.15, output=0.6)
    >>> table.cost("llama-3-8b", 10, 10) is None
    True
    """

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = {name.lower(): price for name, price in prices.items()}
        self._cache: dict[str, ModelPrice | None] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def price(self, model: str) -> ModelPrice | None:
        """The price of ``model``, or ``None`` when the table does not know it."""
        found = self._cache.get(model, self)
        if found is not self:
            return found  # type: ignore[return-value]
        name = model.lower().rsplit("/", 1)[-1]
        best = self._prices.get(name)
        if best is None:
            longest = 0
            for known, price in self._prices.items():
                if len(known) > longest and name.startswith(known + "-"):
                    best, longest = price, len(known)
        if len(self._cache) >= 4096:  # model names come from outside: bound the cache
            self._cache.clear()
        self._cache[model] = best
        return best

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD of one call of ``model``, or ``None`` when its price is unknown."""
        price = self.price(model)
        return None if price is None else price.cost(input_tokens, output_tokens)


def _read(path: Path) -> dict[str, ModelPrice]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise PriceError(f"{path}: cannot read the price table: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PriceError(f"{path}: not valid TOML: {exc}") from None
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise PriceError(f'{path}: needs a [models] table, e.g. "gpt-4o" = {{ input = 2.5, ... }}')
    out: dict[str, ModelPrice] = {}
    for name, entry in models.items():
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise PriceError(f"{path}: model {name!r}: give exactly input and output (USD / 1M)")
        values = [entry["input"], entry["output"]]
        if not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
            for v in values
        ):
            raise PriceError(f"{path}: model {name!r}: prices must be finite numbers >= 0")
        out[name] = ModelPrice(float(values[0]), float(values[1]))
    return out


def load_prices(override: str | Path | None = None) -> PriceTable:
    """The shipped table, with the entries of ``override`` (a TOML file) on top.

    Raises
    ------
    PriceError
        naming the file, the model and what is wrong.
    """
    prices = _read(SHIPPED_PRICES)
    if override is not None:
        prices.update(_read(Path(override)))
    return PriceTable(prices)
