"""``error_storm``: most of the agent's calls fail, and it keeps retrying."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, lerp, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["ErrorStorm", "ErrorStormOptions"]


class ErrorStormOptions(IncidentOptions):
    """Options of an ``error_storm``."""

    error_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    """Share of tool calls that fail (default: 25 % at intensity 0 to 85 % at 1)."""


@register_incident
class ErrorStorm(Incident):
    """Tool calls fail at 50-80 % (classic; 25 % subtle to 85 % blatant with an intensity),
    retried eagerly; LLM calls fail at 10 %."""

    kind = "error_storm"
    durations_min = (5.0, 12.0)
    storm = True
    llm_error_rate = 0.1
    Options = ErrorStormOptions

    options: ErrorStormOptions
    error_rate: float = 0.0

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        if self.options.error_rate is not None:
            self.error_rate = self.options.error_rate
        elif self.intensity is not None:
            self.error_rate = min(lerp(0.25, 0.85, self.intensity) * rng.uniform(0.95, 1.05), 1.0)
        else:
            self.error_rate = rng.uniform(0.5, 0.8)
        return {"error_rate": round(self.error_rate, 3)}

    def tool_error_rate(self, base: float) -> float:
        return self.error_rate
