"""Benign noise the detectors must not page on: error bursts and fleet-wide changes.

An **error burst** is one tool failing for a minute or two for a few agents of one fleet
(labelled per agent, ``error_burst``). A **fleet-wide change** moves a whole fleet at once:
``model_upgrade`` (to a pricier model), ``tool_rollout`` (a new tool in the mix) or
``prompt_change`` (a new system prompt that doubles every call's input tokens), each agent
following within two minutes of the change (a world spec's change may set its
``rollout_minutes``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from agentwatch.lab.sim.catalog import FleetSpec
from agentwatch.lab.sim.config import ChangePlan
from agentwatch.lab.sim.draws import seeded
from agentwatch.lab.sim.profiles import Profile

__all__ = [
    "ROLLOUT_MINUTES",
    "Burst",
    "Change",
    "plan_bursts",
    "plan_change_plans",
    "plan_changes",
]

#: A fleet-wide change reaches each agent at a uniform time within this many minutes of its
#: start, unless a world spec's change says otherwise (``rollout_minutes``).
ROLLOUT_MINUTES = 2.0


@dataclass(frozen=True, slots=True)
class Burst:
    """A benign error burst: ``tool`` fails at ``error_rate`` for ``agents`` of ``fleet``."""

    burst_id: str
    fleet: str
    tool: str
    start_s: float
    end_s: float
    error_rate: float
    error: str
    agents: tuple[str, ...]


@dataclass(slots=True)
class Change:
    """A benign fleet-wide change; ``per_agent`` is when it reaches each agent, and a model
    upgrade's ``new_models`` the model each agent moves to."""

    change_id: str
    kind: str
    fleet: str
    start_s: float
    end_s: float
    per_agent: dict[str, float]  # agent_id -> effective time
    detail: dict[str, Any]
    new_models: dict[str, str]


def plan_bursts(
    seed: int,
    k: int,
    *,
    e0: float,
    e1: float,
    profiles: Sequence[Profile],
    fleets_present: Sequence[str],
    per_hour: float,
    epoch_s: float,
) -> list[Burst]:
    """The error bursts of epoch ``k`` (``[e0, e1)``, ``epoch_s`` long): ``per_hour`` on
    average."""
    bursts: list[Burst] = []
    brng = seeded(seed, "bursts", k)
    mean_bursts = per_hour * epoch_s / 3600.0
    n_bursts = int(mean_bursts) + (brng.random() < mean_bursts % 1.0)
    for b in range(n_bursts):
        fleet_name = brng.choice(fleets_present)
        members = [p for p in profiles if p.fleet.name == fleet_name]
        fleet = members[0].fleet
        tools = [t for t in fleet.tools if t.risk in ("low", "medium")]
        tool = brng.choices(
            tools, weights=[members[0].stationary[fleet.tools.index(t)] + 0.02 for t in tools]
        )[0]
        start = math.floor(brng.uniform(e0, e1 - 60.0))
        end = min(start + math.floor(brng.uniform(45.0, 150.0)), e1)
        hit = brng.sample(members, min(len(members), brng.randint(2, 5)))
        error = brng.choice(
            (
                f"HTTP 503 Service Unavailable: {tool.name} backend is down",
                f"TimeoutError: {tool.name} upstream did not answer in 30s",
                "ConnectionResetError: connection reset by peer",
            )
        )
        bursts.append(
            Burst(f"burst-{k}-{b:02d}", fleet.name, tool.name, start, end,
                  brng.uniform(0.7, 0.95), error, tuple(h.agent_id for h in hit))
        )  # fmt: skip
    return bursts


def plan_changes(
    seed: int,
    kinds: Sequence[str],
    *,
    lo: float,
    hi: float,
    profiles: Sequence[Profile],
    fleets: Mapping[str, FleetSpec],
) -> list[Change]:
    """One change of each of ``kinds``, each in a random fleet (different fleets while there
    are some left), starting in the first half of ``[lo, hi]``."""
    changes: list[Change] = []
    crng = seeded(seed, "changes")
    pool = list(fleets)
    for kind in kinds:
        if not pool:
            pool = list(fleets)
        fleet_name = crng.choice(pool)
        pool.remove(fleet_name)
        fleet = fleets[fleet_name]
        at = math.floor(crng.uniform(lo, lo + 0.5 * (hi - lo)))
        members = [p for p in profiles if p.fleet.name == fleet_name]
        per_agent = {p.agent_id: at + crng.uniform(0.0, 60.0 * ROLLOUT_MINUTES) for p in members}
        detail: dict[str, Any]
        new_models: dict[str, str] = {}
        if kind == "model_upgrade":
            detail = {
                "from_models": sorted({p.model for p in members}),
                "to_model": fleet.upgrade_model,
            }
            new_models = {p.agent_id: fleet.upgrade_model for p in members}
        elif kind == "prompt_change":
            detail = {"input_factor": 2.0, "output_factor": 1.0}
        else:
            detail = {"tool": fleet.rollout_tool.name, "share": crng.uniform(0.1, 0.18)}
        detail["agents"] = len(members)
        changes.append(
            Change(
                f"change-{kind}",
                kind,
                fleet_name,
                at,
                at + 60.0 * ROLLOUT_MINUTES,
                per_agent,
                detail,
                new_models,
            )
        )
    return changes


def plan_change_plans(
    seed: int,
    plans: Sequence[ChangePlan],
    *,
    t0: float,
    lo: float,
    hi: float,
    profiles: Sequence[Profile],
    fleets: Mapping[str, FleetSpec],
) -> list[Change]:
    """The changes a world spec asks for (:class:`~agentwatch.lab.sim.config.ChangePlan`):
    at ``t0 + at_minute`` or at random in the first half of ``[lo, hi]``."""
    changes: list[Change] = []
    for i, plan in enumerate(plans):
        rng = seeded(seed, "change-plan", i)
        fleet_name = plan.fleet if plan.fleet is not None else rng.choice(list(fleets))
        fleet = fleets[fleet_name]
        if plan.at_minute is not None:
            at = t0 + 60.0 * plan.at_minute
        else:
            at = math.floor(rng.uniform(lo, lo + 0.5 * (hi - lo)))
        members = [p for p in profiles if p.fleet.name == fleet_name]
        opts = plan.options
        rollout_s = 60.0 * float(opts.get("rollout_minutes", ROLLOUT_MINUTES))
        per_agent = {p.agent_id: at + rng.uniform(0.0, rollout_s) for p in members}
        detail: dict[str, Any]
        new_models: dict[str, str] = {}
        if plan.kind == "model_upgrade":
            mapping = opts.get("map")
            if mapping:
                new_models = {p.agent_id: str(mapping.get(p.model, p.model)) for p in members}
                detail = {"map": dict(mapping)}
            else:
                to_model = str(opts.get("to_model") or fleet.upgrade_model)
                new_models = {p.agent_id: to_model for p in members}
                detail = {"to_model": to_model}
            detail["from_models"] = sorted({p.model for p in members})
            detail["moved"] = sum(new_models[p.agent_id] != p.model for p in members)
        elif plan.kind == "prompt_change":
            detail = {
                "input_factor": float(opts.get("input_factor", 2.0)),
                "output_factor": float(opts.get("output_factor", 1.0)),
            }
        else:
            share = opts.get("share")
            detail = {
                "tool": fleet.rollout_tool.name,
                "share": float(share) if share is not None else rng.uniform(0.1, 0.18),
            }
        detail["agents"] = len(members)
        changes.append(
            Change(
                f"change-{i:02d}-{plan.kind}",
                plan.kind,
                fleet_name,
                at,
                at + rollout_s,
                per_agent,
                detail,
                new_models,
            )
        )
    return changes
