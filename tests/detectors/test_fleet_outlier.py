from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.fleet_outlier import FleetOutlier, _Forest
from agentwatch.lab.sim import SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
START = 50 * 60.0  # planted incidents start 50 minutes in

Mutate = Callable[[int, float, dict[str, Any], random.Random], None]


def fleet_events(
    *, agents: int = 16, minutes: float = 65.0, seed: int = 0, mutate: Mutate | None = None
) -> list[ActionEvent]:
    """A steady fleet: an action every 4-12 s per agent, 3 % errors, ~0.002 USD per call."""
    rng = random.Random(seed)
    rows = []
    for i in range(agents):
        t = rng.uniform(0.0, 8.0)
        n = 0
        while t < minutes * 60.0:
            kw: dict[str, Any] = {
                "action": rng.choice(("search", "read", "chat")),
                "status": "error" if rng.random() < 0.03 else "ok",
                "cost_usd": round(0.002 * math.exp(0.3 * rng.gauss(0.0, 1.0)), 6),
            }
            if mutate is not None:
                mutate(i, t, kw, rng)
            rows.append((t, i, n, kw))
            n += 1
            t += rng.uniform(4.0, 12.0)
    rows.sort(key=lambda row: (row[0], row[1]))
    return [
        ActionEvent(
            event_id=f"a{i}-{n}", agent_id=f"a{i}", fleet="f", ts=T0 + timedelta(seconds=t), **kw
        )
        for t, i, n, kw in rows
    ]


def run(
    det: FleetOutlier, events: list[ActionEvent], watch: str | None = None
) -> tuple[list[tuple[ActionEvent, Finding]], dict[str, dict[str, Any]], dict[str, Any], list[Any]]:
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    fleet_state: dict[str, Any] = {}
    found = []
    trace = []  # (ts, reference, in fleet vectors, findings) of the watched agent
    for e in events:
        b = baselines.get(e.agent_id) or baselines.setdefault(
            e.agent_id, AgentBaseline(e.agent_id, e.fleet)
        )
        state = states.setdefault(e.agent_id, {})
        out = det.update(e, b, state, fleet_state)
        found += [(e, f) for f in out]
        if e.agent_id == watch:
            vectors = fleet_state["fleet"].vectors
            trace.append((e.ts_epoch, list(state.get("r", [])), watch in vectors, out))
        b.update(e)
    return found, states, fleet_state, trace


def error_storm(agent: int = 3, rate: float = 0.6) -> Mutate:
    def mutate(i: int, t: float, kw: dict[str, Any], rng: random.Random) -> None:
        if i == agent and t >= START and rng.random() < rate:
            kw["status"] = "error"

    return mutate


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["fleet_outlier"] is FleetOutlier
    det = FleetOutlier(z_threshold=8.0, confirm=3, seed=5)
    params = det.params()
    assert params["z_threshold"] == 8.0
    assert params["seed"] == 5
    assert det.clone().params() == params
    assert FleetOutlier(**params).params() == params


@pytest.mark.parametrize("bad", [{"window_s": 0.0}, {"min_agents": 2}, {"confirm": 0}])
def test_rejects_bad_parameters(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        FleetOutlier(**bad)


def test_silent_on_normal_traffic() -> None:
    found, states, _, _ = run(FleetOutlier(), fleet_events(minutes=90.0, seed=1))
    assert found == []
    assert all(len(json.dumps(state)) < 200 for state in states.values())


@pytest.fixture(scope="module")
def storm() -> tuple[list[ActionEvent], list[tuple[ActionEvent, Finding]], Any, list[Any]]:
    events = fleet_events(mutate=error_storm())
    found, states, _, trace = run(FleetOutlier(), events, watch="a3")
    return events, found, states, trace


def test_error_storm_is_explained(storm: Any) -> None:
    _, found, states, _ = storm
    assert found
    assert {e.agent_id for e, _ in found} == {"a3"}
    first, finding = found[0]
    assert START <= first.ts_epoch - T0.timestamp() <= START + 240.0
    assert finding.kind == "failure_share"
    assert finding.score >= finding.threshold == 10.0
    assert finding.observed > 0.3 > 0.1 > finding.baseline
    assert finding.summary.startswith("a3 stands out in fleet f on failure share: ")
    assert f"{finding.observed:.0%} of " in finding.summary
    assert f"vs {finding.baseline:.1%} usual" in finding.summary
    assert f"robust z {finding.score:+.1f}" in finding.summary
    assert 0 < len(finding.evidence) <= 20
    assert all(ev.startswith("a3-") for ev in finding.evidence)
    assert finding.actions and set(finding.actions) <= {"search", "read", "chat"}
    json.dumps(states["a3"])


def test_failing_evidence_are_the_failed_events(storm: Any) -> None:
    events, found, _, _ = storm
    status = {e.event_id: e.status for e in events}
    _, finding = found[0]
    assert all(status[ev] == "error" for ev in finding.evidence)


def test_cost_explosion_names_the_ratio() -> None:
    def explode(i: int, t: float, kw: dict[str, Any], rng: random.Random) -> None:
        if i == 5 and t >= START:
            kw["cost_usd"] *= 8.0

    found, _, _, _ = run(FleetOutlier(), fleet_events(mutate=explode))
    assert {e.agent_id for e, _ in found} == {"a5"}
    _, finding = found[0]
    assert finding.kind in {"cost_per_event", "cost_per_min"}
    assert finding.observed / finding.baseline > 4.0
    assert f"({finding.observed / finding.baseline:.1f}x)" in finding.summary
    assert "while the fleet's median agent moved x" in finding.summary


def test_probing_denials() -> None:
    def probe(i: int, t: float, kw: dict[str, Any], rng: random.Random) -> None:
        if i == 7 and t >= START and rng.random() < 0.15:
            kw.update(action="get_secret", status="denied")

    found, _, _, _ = run(FleetOutlier(), fleet_events(mutate=probe))
    assert {e.agent_id for e, _ in found} == {"a7"}
    _, finding = found[0]
    assert finding.kind == "denials"
    assert finding.actions == ("get_secret",)
    assert f"{int(finding.observed)} of " in finding.summary
    assert "events denied" in finding.summary
    assert finding.baseline < 0.5  # expected denials at the usual (zero) share


def test_fleet_wide_change_is_not_an_outlier() -> None:
    def upgrade(i: int, t: float, kw: dict[str, Any], rng: random.Random) -> None:
        if t >= START + 4.0 * i:  # the whole fleet moves to a 5x pricier model within a minute
            kw["cost_usd"] *= 5.0

    found, _, _, _ = run(FleetOutlier(), fleet_events(mutate=upgrade))
    assert found == []


def test_does_not_learn_from_flagged_windows(storm: Any) -> None:
    _, _, _, trace = storm
    flagged = [row for row in trace if row[3]]
    assert len(flagged) > 10
    references = {tuple(row[1]) for row in flagged}
    assert len(references) == 1  # the reference is frozen while the agent is flagged
    assert not any(row[2] for row in flagged)  # and its vector is not part of the fleet
    before = [row for row in trace if row[0] < T0.timestamp() + START][-1][1]
    frozen = next(iter(references))
    # failures per minute: the onset (before the first candidate) moved it only a little
    assert frozen[2] == pytest.approx(before[2], rel=0.2)
    after = trace[-1][1]  # the storm lasts to the end: still not learned
    assert after[2] == pytest.approx(before[2], rel=0.2)


def test_finding_repeats_between_scorings(storm: Any) -> None:
    _, found, _, _ = storm
    first_ts = found[0][0].ts_epoch
    soon = [f for e, f in found if first_ts < e.ts_epoch < first_ts + 25.0]
    assert soon and all(f is found[0][1] for f in soon)


def test_deterministic(storm: Any) -> None:
    events, found, _, _ = storm
    again, _, _, _ = run(FleetOutlier(), events)
    assert [(e.event_id, f) for e, f in again] == [(e.event_id, f) for e, f in found]


def test_small_fleet_is_never_compared() -> None:
    found, _, _, _ = run(FleetOutlier(), fleet_events(agents=8, mutate=error_storm()))
    assert found == []


def test_compact_forest_scores_like_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(80, 5))
    model = IsolationForest(n_estimators=20, random_state=7, contamination="auto").fit(train)
    forest = _Forest(train, n_estimators=20, seed=7)
    probes = np.vstack([rng.normal(size=(30, 5)), rng.normal(scale=8.0, size=(10, 5))])
    expected = -model.score_samples(probes)
    got = [forest.score(row.tolist()) for row in probes]
    assert got == pytest.approx(expected.tolist(), abs=1e-12)


def test_simulated_fleet_with_benign_changes() -> None:
    sim = Simulation(
        SimConfig(
            agents=30,
            minutes=70,
            seed=9,
            shape={"coder": 1.0},
            incidents=("error_storm", "cost_explosion"),
            warmup_minutes=35,
        )
    )
    labels = [label for label in sim.labels() if not label.benign and label.agent_id]
    found, _, _, _ = run(FleetOutlier(), list(sim.events(validate=False)))
    # a cost explosion before the fleet's model upgrade, an error storm after it
    assert sorted(label.kind for label in labels) == ["cost_explosion", "error_storm"]
    flagged = {e.agent_id for e, _ in found}
    assert flagged == {label.agent_id for label in labels}  # both caught, nobody else


def run_split(
    events: list[ActionEvent], workers: int, exchange: bool
) -> list[tuple[ActionEvent, Finding]]:
    """``events`` on ``workers`` workers (agent ``a<i>`` on worker ``i % workers``), each
    with its own fleet state; with ``exchange``, each absorbs the others' partials (through
    JSON, as the fleets topic carries them) after every event."""
    det = FleetOutlier()
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    fleets: list[dict[str, Any]] = [{} for _ in range(workers)]
    found = []
    for e in events:
        home = int(e.agent_id[1:]) % workers
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        found += [(e, f) for f in det.update(e, b, states.setdefault(e.agent_id, {}), fleets[home])]
        b.update(e)
        if exchange:
            parts = [json.loads(json.dumps(det.fleet_partial(f))) for f in fleets]
            for w, fleet_state in enumerate(fleets):
                det.fleet_absorb(fleet_state, [p for k, p in enumerate(parts) if k != w and p])
    return found


def test_workers_that_share_their_agents_vectors_judge_against_the_whole_fleet(
    storm: Any,
) -> None:
    events, one, _, _ = storm
    two = run_split(events, 2, exchange=True)
    apart = run_split(events, 2, exchange=False)
    assert one and {e.agent_id for e, _ in one} == {"a3"}
    # each worker sees 8 of the 16 agents: fewer than min_agents, so alone it judges nobody
    assert apart == []
    # together they flag the same agent for the same reason, within a scoring or two (each
    # worker refreshes the fleet's median on its own agents' clock)
    assert {(e.agent_id, f.kind) for e, f in two} == {(e.agent_id, f.kind) for e, f in one}
    assert abs(two[0][0].ts_epoch - one[0][0].ts_epoch) <= 2 * FleetOutlier().score_every_s


def test_a_restarted_worker_keeps_its_agents_vectors_and_newer_ones_win() -> None:
    det = FleetOutlier()
    fleet_state: dict[str, Any] = {}
    det.fleet_restore(fleet_state, {"v": {"a1": [10.0, [0.1] * 5], "a2": [12.0, [0.2] * 5]}})
    fleet = fleet_state["fleet"]
    fleet.vectors["a2"] = (20.0, [0.3] * 5)
    det.fleet_restore(fleet_state, {"v": {"a2": [12.0, [0.2] * 5]}})  # older: ignored
    det.fleet_absorb(fleet_state, [{"v": {"b1": [15.0, [0.4] * 5]}}])
    assert fleet.fleet_vectors(horizon=11.0) == [[0.3] * 5, [0.4] * 5]  # a1 is stale
    assert det.fleet_partial(fleet_state) == {
        "v": {"a1": [10.0, [0.1] * 5], "a2": [20.0, [0.3] * 5]}
    }
