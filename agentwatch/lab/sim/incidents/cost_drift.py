"""``cost_drift``: a cost ramp, the agent's LLM calls growing to several times their cost."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.incidents.base import (
    Incident,
    IncidentOptions,
    lerp,
    register_incident,
    utc,
)
from agentwatch.schemas._types import format_ts

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["CostDrift", "CostDriftOptions"]

_HOLD_S = 1800.0  # a ramp with an intensity ends at least this long before the run does


class CostDriftOptions(IncidentOptions):
    """Options of a ``cost_drift`` (a cost ramp)."""

    ramp_minutes: float | None = Field(default=None, ge=1.0)
    """How long the ramp takes (default: 8 h at intensity 0 to 30 min at 1)."""
    final_factor: float | None = Field(default=None, gt=1.0, le=50.0)
    """The cost multiple the ramp reaches (default: 3x at intensity 0 to 4x at 1)."""


@register_incident
class CostDrift(Incident):
    """Input and output tokens ramp linearly from 1x to a final multiple, then stay there to
    the end of the run (of the epoch).

    Classic: from the first quarter of the window to its end, to 3-5x. With an intensity or
    options: over ``ramp_minutes`` to ``final_factor``, starting where the ramp and half an
    hour at its top still fit in the run. The label's ``crosses_2x_at`` (``crosses_3x_at``) is
    when the cost rate reaches twice (three times) the starting one
    (``start + ramp * (k - 1) / (final - 1)``).
    """

    kind = "cost_drift"
    Options = CostDriftOptions

    options: CostDriftOptions
    final_factor: float = 1.0
    ramp_s: float = 0.0

    @classmethod
    def window(
        cls,
        rng: random.Random,
        lo: float,
        hi: float,
        intensity: float | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[float, float]:
        opts = cls.Options.model_validate(options or {})
        ramp_s = _ramp_s(intensity, opts)
        if ramp_s is None:
            return float(math.floor(lo + rng.uniform(0.0, 0.25) * (hi - lo))), hi
        slack = max(hi - lo - ramp_s - _HOLD_S, 0.0)
        return float(math.floor(lo + rng.uniform(0.0, slack))), hi

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        opts = self.options
        ramp_s = _ramp_s(self.intensity, opts)
        span = self.end_s - self.start_s
        if ramp_s is None:
            self.final_factor = rng.uniform(3.0, 5.0)
            self.ramp_s = span
        else:
            level = 0.5 if self.intensity is None else self.intensity
            self.final_factor = opts.final_factor or lerp(3.0, 4.0, level)
            self.ramp_s = min(ramp_s, span)
        params: dict[str, Any] = {"final_factor": round(self.final_factor, 2)}
        if ramp_s is not None:
            params["ramp_minutes"] = round(self.ramp_s / 60.0, 1)
        for multiple in (2, 3):
            if self.final_factor >= multiple:
                crossing = self.start_s + self.ramp_s * (multiple - 1) / (self.final_factor - 1.0)
                params[f"crosses_{multiple}x_at"] = format_ts(utc(crossing))
        return params

    def llm_call(self, t: float, model: str) -> tuple[str, float, float]:
        frac = (t - self.start_s) / self.ramp_s
        f = 1.0 + (self.final_factor - 1.0) * min(max(frac, 0.0), 1.0)
        return model, f, f


def _ramp_s(intensity: float | None, opts: CostDriftOptions) -> float | None:
    """The ramp's length in seconds, or ``None`` for the classic ramp over the window."""
    if opts.ramp_minutes is not None:
        return 60.0 * opts.ramp_minutes
    if intensity is not None or opts.final_factor is not None:
        return 60.0 * lerp(480.0, 30.0, 0.5 if intensity is None else intensity)
    return None
