"""``privilege_probing``: the agent tries privileged actions it is not allowed, and is denied."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.catalog import PROBE_DENIALS, PROBES
from agentwatch.lab.sim.draws import lognormal
from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, lerp, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["PrivilegeProbing", "PrivilegeProbingOptions"]


class PrivilegeProbingOptions(IncidentOptions):
    """Options of a ``privilege_probing``."""

    probes_per_min: float | None = Field(default=None, gt=0.0, le=120.0)
    """Probes a minute (default: 0.5 at intensity 0 to 4 at 1)."""


@register_incident
class PrivilegeProbing(Incident):
    """Probes at random times in the window: reading credentials, ``sudo``, admin APIs, the
    cloud metadata endpoint; 80 % denied, 15 % errors. Classic: 2-4 a minute, at least 10;
    with an intensity: 0.5 (subtle) to 4 (blatant) a minute, at least 3, the first at the
    start."""

    kind = "privilege_probing"
    durations_min = (5.0, 12.0)
    Options = PrivilegeProbingOptions

    options: PrivilegeProbingOptions

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        start, end = self.start_s, self.end_s
        per_min = self.options.probes_per_min
        if per_min is None and self.intensity is not None:
            per_min = lerp(0.5, 4.0, self.intensity)
        if per_min is None:
            count = max(10, int((end - start) / 60.0 * rng.uniform(2.0, 4.0)))
            times = sorted(rng.uniform(start, end) for _ in range(count))
        else:  # the incident starts with its first probe
            count = max(3, int((end - start) / 60.0 * per_min))
            times = [start, *sorted(rng.uniform(start, end) for _ in range(count - 1))]
        for ts in times:
            action, target, akind, risk = rng.choice(PROBES)
            u = rng.random()
            status = "denied" if u < 0.8 else ("error" if u < 0.95 else "ok")
            kw: dict[str, Any] = {
                **self.base_event(),
                "action": action,
                "target": target,
                "kind": akind,
                "risk": risk,
                "status": status,
                "latency_ms": round(lognormal(rng, 40.0, 0.5), 1),
            }
            if status != "ok":
                kw["error"] = rng.choice(PROBE_DENIALS)
            self.injected.append((ts, kw))
        return {"probes": count}
