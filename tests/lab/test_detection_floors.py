"""The shipped rules hold their floors on a small world at each density extreme.

Two world specs (``tests/lab/worlds``), small fleets with every incident kind at moderate
intensity, one with sparse agents (0.2-3 events a minute, half-hour idle gaps, 12 h) and one
with dense agents (3-30 a minute, 4 h). Their seeds are their own: no rule was tuned on them.
Each is simulated and replayed through the shipped rules by the same path as ``agentwatch
backtest --worlds`` and scored; the floors below are the figures ``docs/detectors.md``
states for the two extremes. Where the project's bar (issue 12: recall 0.97, 0.5 false
episodes per 100 agent-hours, none on benign fleet-wide changes, median 45 s to detect the
fast kinds) is met, the floor is the bar; where it is not met yet (a sparse agent's cost
explosion and error storm, which surface over a few of its calls, minutes apart), the floor
is the measured figure with a little room, so a regression still fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agentwatch.detectors.rules import load_rules
from agentwatch.lab.evaluation import Evaluation
from agentwatch.lab.matrix.run import run_world
from agentwatch.lab.sim import load_world

WORLDS = Path(__file__).parent / "worlds"

_FAST = ("runaway_loop", "privilege_probing", "exfiltration", "unapproved_high_risk")


@dataclass(frozen=True)
class Floor:
    """What the shipped rules must reach on one world."""

    min_recall: float
    max_false_per_100_agent_hours: float = 0.5
    max_ttd_s: dict[str, float] = field(default_factory=dict)
    ramps_in_time: bool = True


FLOORS = {
    # measured 2026-12-05: recall 10/10, 0.00 false/100 agent-h, 0 benign; median TTD loops
    # 21 s, explosions 39 s, storm 59 s, probing 0 s, exfiltration 13 s, unapproved 3 s
    "floor-dense": Floor(
        min_recall=0.97,
        max_ttd_s={**dict.fromkeys(_FAST, 45.0), "cost_explosion": 45.0, "error_storm": 75.0},
    ),
    # measured 2026-12-05: recall 9/10 (the mix shift missed), 0.00 false/100 agent-h,
    # 0 benign; median TTD loops 28 s, explosions 146 s, storm 118 s, probing 0 s,
    # exfiltration 29 s, unapproved 1 s
    "floor-sparse": Floor(
        min_recall=0.9,
        max_ttd_s={**dict.fromkeys(_FAST, 45.0), "cost_explosion": 180.0, "error_storm": 150.0},
        ramps_in_time=False,  # its 102-minute ramp is flagged 35 min after crossing 2x
    ),
}


@pytest.fixture(scope="module")
def evaluations(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Evaluation]:
    rules = load_rules()
    traces = tmp_path_factory.mktemp("traces")
    return {
        name: run_world(load_world(WORLDS / f"{name}.yml"), rules, traces=traces).evaluation
        for name in FLOORS
    }


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_shipped_rules_hold_their_floors(name: str, evaluations: dict[str, Evaluation]) -> None:
    ev, floor = evaluations[name], FLOORS[name]
    missed = [(r.kind, r.agent_id) for r in ev.incidents if not r.detected]
    assert ev.recall >= floor.min_recall, (ev.recall, missed)
    assert ev.false_per_100_agent_hours <= floor.max_false_per_100_agent_hours, (
        ev.false_per_100_agent_hours
    )
    assert ev.benign_change_total == 0, ev.benign_change_total
    for kind, limit in floor.max_ttd_s.items():
        stats = ev.kind(kind)
        assert stats is not None and stats.detected, f"{kind}: no incident caught"
        assert stats.median_ttd_s is not None and stats.median_ttd_s <= limit, (
            kind,
            stats.median_ttd_s,
        )
    ramps = ev.fast_ramps
    assert ramps, "no fast cost ramp in the world"
    assert all(r.detected for r in ramps)
    if floor.ramps_in_time:
        assert all(ev.ramp_in_time(r) for r in ramps), [r.after_2x_s for r in ramps]


def test_every_incident_kind_is_in_both_worlds(evaluations: dict[str, Evaluation]) -> None:
    kinds = {
        "runaway_loop", "cost_explosion", "cost_drift", "error_storm", "privilege_probing",
        "exfiltration", "mix_shift", "unapproved_high_risk",
    }  # fmt: skip
    for ev in evaluations.values():
        assert {k.kind for k in ev.kinds} == kinds
