"""``exfiltration``: the agent reads a secret, then sends data to a domain nobody uses."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.catalog import EXFIL_DOMAINS, FIRST_NAMES, INCIDENT_TOOLS
from agentwatch.lab.sim.draws import lognormal
from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, register_incident

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile

__all__ = ["Exfiltration", "ExfiltrationOptions"]


class ExfiltrationOptions(IncidentOptions):
    """Options of an ``exfiltration``."""

    pairs: int | None = Field(default=None, ge=1, le=10)
    """Secret reads, each followed by an upload (default: 1 at intensity 0 to 3 at 1)."""


@register_incident
class Exfiltration(Incident):
    """1-3 pairs (1 subtle to 3 blatant with an intensity) of a secret read followed 5-60 s
    later by an upload (``http_post``) or an email to one of
    :data:`~agentwatch.lab.sim.catalog.EXFIL_DOMAINS`."""

    kind = "exfiltration"
    durations_min = (3.0, 8.0)
    Options = ExfiltrationOptions

    options: ExfiltrationOptions

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        start, end = self.start_s, self.end_s
        role = prof.fleet.role
        base = self.base_event()
        if self.options.pairs is not None:
            pairs = self.options.pairs
        elif self.intensity is not None:
            pairs = 1 + round(2 * self.intensity)
        else:
            pairs = rng.randint(1, 3)
        span = max(end - start - 90.0, 1.0)
        reads: list[str] = []
        dests: list[str] = []
        for j in range(pairs):
            # the incident starts with its first secret read, the first step of it that is
            # in the event stream (as unapproved_high_risk starts with its first action);
            # further pairs follow at random within the window
            if j == 0:
                t_read = start + rng.uniform(0.0, 5.0)
            else:
                t_read = start + span * (j + rng.random()) / pairs
            if role == "coder":
                secret = (
                    "read_file",
                    f"/workspace/{prof.repo}/"
                    + rng.choice((".env", "secrets/prod.json", ".aws/credentials")),
                )
            elif role == "ops":
                secret = ("get_secret", f"vault:kv/prod/{rng.choice(prof.services)}/db-password")
            else:
                secret = rng.choice(
                    (
                        ("read_file", "/app/.env"),
                        ("get_secret", "vault:kv/prod/payments/stripe-live-key"),
                    )
                )
            spec = INCIDENT_TOOLS[secret[0]]
            read_kw: dict[str, Any] = {
                **base,
                "action": secret[0],
                "target": secret[1],
                "latency_ms": round(lognormal(rng, 30.0, 0.5), 1),
            }
            if spec.risk != "low":
                read_kw["risk"] = spec.risk
                read_kw["approved_by"] = "policy:vault-readonly"
            self.injected.append((t_read, read_kw))
            domain = rng.choice(EXFIL_DOMAINS)
            t_send = t_read + rng.uniform(5.0, 60.0)
            if rng.random() < 0.6:
                dest = f"https://{domain}/upload/{rng.getrandbits(32):08x}"
                send_kw: dict[str, Any] = {
                    **base,
                    "action": "http_post",
                    "kind": "api",
                    "risk": "medium",
                    "target": dest,
                    "attributes": {"bytes": rng.randint(2_000, 400_000)},
                }
            else:
                dest = f"{rng.choice(FIRST_NAMES)}{rng.randint(10, 99)}@{domain}"
                send_kw = {
                    **base,
                    "action": "send_email",
                    "risk": "medium",
                    "target": dest,
                    "attributes": {"attachments": 1},
                }
            send_kw["latency_ms"] = round(lognormal(rng, 400.0, 0.5), 1)
            self.injected.append((t_send, send_kw))
            reads.append(secret[1])
            dests.append(dest)
        return {"secrets": reads, "destinations": dests}
