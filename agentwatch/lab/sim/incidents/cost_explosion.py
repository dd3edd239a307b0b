"""``cost_explosion``: every step calls the LLM, on a pricier model or with a bigger context."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Literal

from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, lerp, register_incident
from agentwatch.lab.sim.prices import MODEL_PRICES

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["CostExplosion", "CostExplosionOptions"]

Mode = Literal["any", "model_switch", "context_stuffing", "context_growth"]


class CostExplosionOptions(IncidentOptions):
    """Options of a ``cost_explosion``."""

    mode: Mode = "any"
    """``model_switch`` (a pricier model), ``context_stuffing`` (a much bigger prompt at
    once), ``context_growth`` (the prompt snowballs on the same model) or ``any``."""


@register_incident
class CostExplosion(Incident):
    """An LLM call before every tool call, often two, that cost many times the usual.

    Classic (no intensity): a switch to the fleet's premium model with somewhat longer
    prompts (half the time, when the agent is not already on it), else 5-10x longer prompts
    on the usual model. With an intensity: a switch to the catalogue model whose price is
    closest to 3x (subtle) to 20x (blatant) the agent's own, prompts 3x to 12x longer at once,
    or prompts that grow steadily on the same model to 4x (subtle, over 5 minutes) to 20x
    (blatant, over one minute).
    """

    kind = "cost_explosion"
    durations_min = (5.0, 12.0)
    Options = CostExplosionOptions

    options: CostExplosionOptions
    model: str | None = None
    in_factor: float = 1.0
    out_factor: float = 1.0
    grow_s: float = 0.0

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        if self.intensity is None and self.options.mode == "any":
            return self._plan_classic(prof, rng)
        level = 0.5 if self.intensity is None else self.intensity
        mode = self.options.mode
        if mode == "any":
            mode = rng.choice(("model_switch", "context_stuffing", "context_growth"))
        if mode == "model_switch":
            self.model = _pricier(prof, lerp(3.0, 20.0, level))
            if self.model is None:  # nothing pricier than the agent's model
                mode = "context_stuffing"
        if mode == "model_switch":
            self.in_factor = rng.uniform(1.0, 1.3)
            self.out_factor = rng.uniform(1.0, 1.3)
        elif mode == "context_stuffing":
            self.in_factor = lerp(3.0, 12.0, level) * rng.uniform(0.9, 1.1)
            self.out_factor = rng.uniform(1.2, 2.0)
        else:
            self.in_factor = lerp(4.0, 20.0, level) * rng.uniform(0.9, 1.1)
            self.out_factor = rng.uniform(1.0, 1.3)
            self.grow_s = lerp(300.0, 60.0, level)
        params: dict[str, Any] = {
            "mode": mode,
            "model": self.model,
            "input_factor": round(self.in_factor, 2),
            "output_factor": round(self.out_factor, 2),
        }
        if self.model is not None:
            params["price_ratio"] = round(
                _blended(prof, self.model) / _blended(prof, prof.model), 2
            )
        if self.grow_s:
            params["grow_seconds"] = self.grow_s
        return params

    def _plan_classic(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        fleet = prof.fleet
        if rng.random() < 0.5 and fleet.premium_model != prof.model:
            # switched to the premium model, with somewhat longer prompts
            self.model = fleet.premium_model
            self.in_factor = rng.uniform(1.5, 2.5)
            self.out_factor = rng.uniform(1.2, 2.0)
        else:  # context stuffing on the usual model
            self.in_factor = rng.uniform(5.0, 10.0)
            self.out_factor = rng.uniform(1.5, 2.5)
        return {
            "mode": "premium_model" if self.model else "context_stuffing",
            "model": self.model,
            "input_factor": round(self.in_factor, 2),
            "output_factor": round(self.out_factor, 2),
        }

    def llm_share(self, base: float) -> float:
        return 1.0

    def extra_llm_call(self, rng: random.Random) -> bool:
        return rng.random() < 0.5

    def llm_call(self, t: float, model: str) -> tuple[str, float, float]:
        f_in = self.in_factor
        if self.grow_s:
            f_in = 1.0 + (f_in - 1.0) * min(max((t - self.start_s) / self.grow_s, 0.0), 1.0)
        return self.model or model, f_in, self.out_factor


def _blended(prof: Profile, model: str) -> float:
    """USD of one of the agent's typical LLM calls on ``model``."""
    price_in, price_out = MODEL_PRICES[model]
    return prof.in_base * price_in + prof.out_base * price_out


def _pricier(prof: Profile, ratio: float) -> str | None:
    """The catalogue model whose price is closest to ``ratio`` times the agent's (at least
    1.5 times), or ``None``."""
    own = _blended(prof, prof.model)
    choices = [m for m in MODEL_PRICES if _blended(prof, m) >= 1.5 * own]
    if not choices:
        return None
    return min(choices, key=lambda m: (abs(math.log(_blended(prof, m) / own / ratio)), m))
