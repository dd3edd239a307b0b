"""``mix_shift``: the agent's tool mix changes (its rarest tools become its most used)."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.draws import cumulative
from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, lerp, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["MixShift", "MixShiftOptions"]


class MixShiftOptions(IncidentOptions):
    """Options of a ``mix_shift``."""

    tv_distance: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Total variation between the old and new tool mix (default: 0.2 at intensity 0 to
    0.8 at 1; capped by what reversing the agent's ranking can reach)."""


@register_incident
class MixShift(Incident):
    """The agent's stationary tool mix with its ranking reversed (topped up with its rarest
    tool when that moves less than 0.3 in total variation), drawn independently each step.
    With an intensity, a blend of the old and the reversed mix at the asked distance."""

    kind = "mix_shift"
    durations_min = (10.0, 20.0)
    Options = MixShiftOptions

    options: MixShiftOptions
    alt_chain: list[list[float]] | None = None

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        fleet = prof.fleet
        n_tools = len(fleet.tools)
        pi = prof.stationary
        order = sorted(range(n_tools), key=lambda i: pi[i])
        q = [0.0] * n_tools
        for rank, i in enumerate(order):
            q[i] = pi[order[n_tools - 1 - rank]]
        tv = 0.5 * sum(abs(a - b) for a, b in zip(pi, q, strict=True))
        target = self.options.tv_distance
        if target is None and self.intensity is not None:
            target = lerp(0.2, 0.8, self.intensity)
        if tv < (0.3 if target is None else target):
            q = [0.5 * x for x in q]
            q[order[0]] += 0.5
            tv = 0.5 * sum(abs(a - b) for a, b in zip(pi, q, strict=True))
        if target is not None and tv > target:  # part of the way: the blend moves linearly
            share = target / tv
            q = [(1.0 - share) * a + share * b for a, b in zip(pi, q, strict=True)]
            tv = 0.5 * sum(abs(a - b) for a, b in zip(pi, q, strict=True))
        row = cumulative([*q, 0.0])
        self.alt_chain = [row] * (n_tools + 2)
        names = [t.name for t in fleet.tools]
        return {
            "tv_distance": round(tv, 3),
            "before": {names[i]: round(pi[i], 3) for i in range(n_tools)},
            "after": {names[i]: round(q[i], 3) for i in range(n_tools)},
        }

    def chain(self) -> list[list[float]] | None:
        return self.alt_chain
