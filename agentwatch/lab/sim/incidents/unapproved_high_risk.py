"""``unapproved_high_risk``: the agent makes high or critical calls nobody approved."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.draws import lognormal
from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["UnapprovedHighRisk", "UnapprovedHighRiskOptions"]


class UnapprovedHighRiskOptions(IncidentOptions):
    """Options of an ``unapproved_high_risk``."""

    count: int | None = Field(default=None, ge=1, le=50)
    """Unapproved calls (default: 1 at intensity 0 to 4 at 1)."""


@register_incident
class UnapprovedHighRisk(Incident):
    """2-4 (1 subtle to 4 blatant with an intensity) of the fleet's high or critical tools
    without ``approved_by`` (deploys go to production, refunds are large), the first at the
    start of the window."""

    kind = "unapproved_high_risk"
    durations_min = (5.0, 15.0)
    Options = UnapprovedHighRiskOptions

    options: UnapprovedHighRiskOptions

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        start, end = self.start_s, self.end_s
        risky = [t for t in prof.fleet.tools if t.risk in ("high", "critical")]
        if self.options.count is not None:
            count = self.options.count
        elif self.intensity is not None:
            count = 1 + round(3 * self.intensity)
        else:
            count = rng.randint(2, 4)
        actions: list[str] = []
        for i in range(count):
            spec = rng.choice(risky)
            attrs: dict[str, Any] = {}
            target = prof.target(spec.name, rng, prof.new_session(rng, ""), attrs)
            if spec.name == "deploy":
                target = target.replace("@staging", "@prod")
            if spec.name == "refund":
                attrs["amount_usd"] = round(rng.uniform(250.0, 2500.0), 2)
            kw: dict[str, Any] = {
                **self.base_event(),
                "action": spec.name,
                "target": target,
                "risk": spec.risk,
                "latency_ms": round(lognormal(rng, spec.latency_ms, spec.latency_sigma), 1),
            }
            if spec.kind != "tool":
                kw["kind"] = spec.kind
            if attrs:
                kw["attributes"] = attrs
            # the incident starts with its first unapproved action (that is when it is
            # detectable); the rest follow at random within the window
            at = start + rng.uniform(0.0, 5.0) if i == 0 else rng.uniform(start, end)
            self.injected.append((at, kw))
            actions.append(spec.name)
        return {"actions": actions}
