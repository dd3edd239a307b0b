"""``cost_drift``: the agent's LLM calls grow slowly, to several times their cost."""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

from agentwatch.lab.sim.incidents.base import Incident, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["CostDrift"]


@register_incident
class CostDrift(Incident):
    """Input and output tokens ramp linearly from 1x at the start to 3-5x at the end of the
    run (of the epoch): a slow creep that starts in the first quarter of the window."""

    kind = "cost_drift"

    final_factor: float = 1.0

    @classmethod
    def window(cls, rng: random.Random, lo: float, hi: float) -> tuple[float, float]:
        return float(math.floor(lo + rng.uniform(0.0, 0.25) * (hi - lo))), hi

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        self.final_factor = rng.uniform(3.0, 5.0)
        return {"final_factor": round(self.final_factor, 2)}

    def llm_call(self, t: float, model: str) -> tuple[str, float, float]:
        frac = (t - self.start_s) / (self.end_s - self.start_s)
        f = 1.0 + (self.final_factor - 1.0) * min(max(frac, 0.0), 1.0)
        return model, f, f
