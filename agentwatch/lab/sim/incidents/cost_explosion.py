"""``cost_explosion``: every step calls the LLM, on a pricier model or with a stuffed context."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from agentwatch.lab.sim.incidents.base import Incident, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["CostExplosion"]


@register_incident
class CostExplosion(Incident):
    """A switch to the fleet's premium model with somewhat longer prompts (half the time, when
    the agent is not already on it), else 5-10x longer prompts on the usual model; an LLM
    call before every tool call, often two."""

    kind = "cost_explosion"
    durations_min = (5.0, 12.0)

    model: str | None = None
    in_factor: float = 1.0
    out_factor: float = 1.0

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
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
        return self.model or model, self.in_factor, self.out_factor
