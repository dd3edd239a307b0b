"""``privilege_probing``: the agent tries privileged actions it is not allowed, and is denied."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from agentwatch.lab.sim.catalog import PROBE_DENIALS, PROBES
from agentwatch.lab.sim.draws import lognormal
from agentwatch.lab.sim.incidents.base import Incident, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["PrivilegeProbing"]


@register_incident
class PrivilegeProbing(Incident):
    """2-4 probes a minute (at least 10) at random times in the window: reading credentials,
    ``sudo``, admin APIs, the cloud metadata endpoint; 80 % denied, 15 % errors."""

    kind = "privilege_probing"
    durations_min = (5.0, 12.0)

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        start, end = self.start_s, self.end_s
        count = max(10, int((end - start) / 60.0 * rng.uniform(2.0, 4.0)))
        times = sorted(rng.uniform(start, end) for _ in range(count))
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
