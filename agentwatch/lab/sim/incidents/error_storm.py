"""``error_storm``: most of the agent's calls fail, and it keeps retrying."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from agentwatch.lab.sim.incidents.base import Incident, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["ErrorStorm"]


@register_incident
class ErrorStorm(Incident):
    """Tool calls fail at 50-80 % (retried eagerly), LLM calls at 10 %."""

    kind = "error_storm"
    durations_min = (5.0, 12.0)
    storm = True
    llm_error_rate = 0.1

    error_rate: float = 0.0

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        self.error_rate = rng.uniform(0.5, 0.8)
        return {"error_rate": round(self.error_rate, 3)}

    def tool_error_rate(self, base: float) -> float:
        return self.error_rate
