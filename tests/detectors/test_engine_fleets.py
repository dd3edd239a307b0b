"""The engine's fleet state across workers: partials, absorbing, expiry and restore."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.backtest import home_partition, read_events
from agentwatch.lab.sim import Simulation, load_world, write_jsonl
from agentwatch.schemas import ActionEvent, Anomaly

WORLD = Path(__file__).parents[1] / "lab" / "worlds" / "partitions.yml"
SHARED = {
    "RunawayLoop",
    "CostSpike",
    "FailureRate",
    "Exfiltration",
    "UnusualToolSequence",
    "NovelDestination",
    "ActionMixShift",
    "CostDrift",
}


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[ActionEvent]:
    where = tmp_path_factory.mktemp("fleets")
    write_jsonl(Simulation(load_world(WORLD).config), where / "e.jsonl", where / "l.jsonl")
    return [e for e in read_events(where / "e.jsonl") if e is not None]


def key(a: Anomaly) -> tuple[str, str, str, str]:
    return (a.agent_id, a.rule, a.kind, a.evidence[0])


def test_partials_are_json_and_name_every_fleet_and_fleet_aware_rule(
    events: list[ActionEvent],
) -> None:
    engine = Engine(load_rules())
    for event in events[:4000]:
        engine.process(event)
    partials = engine.fleet_partials()
    assert orjson.loads(orjson.dumps(partials)) == partials
    assert set(partials) == {"ops-1", "support-2"}
    for by_alert in partials.values():
        assert set(by_alert) >= SHARED
    assert set(engine.fleet_partials("ops-1")) == {"ops-1"}


def test_another_workers_partial_counts_until_it_expires_and_our_own_is_ignored(
    events: list[ActionEvent],
) -> None:
    rules = load_rules()
    mine, theirs = Engine(rules, worker_id="a"), Engine(rules, worker_id="b")
    for event in events[:6000]:
        (mine if home_partition(event.agent_id, 2) == 0 else theirs).process(event)

    def agents(engine: Engine) -> int:
        fleet: Any = engine.fleet_states[("FailureRate", "support-2")]["failure_rate"]
        return int(fleet.fleet_agents())

    alone = agents(mine)
    partials = theirs.fleet_partials()["support-2"]
    mine.absorb("a", "support-2", partials, now=100.0)  # its own id: not another worker
    assert agents(mine) == alone
    mine.absorb("b", "support-2", partials, now=100.0)
    assert agents(mine) == alone + agents(theirs) > alone
    mine.expire(now=159.0)
    assert agents(mine) == alone + agents(theirs)
    mine.expire(now=161.0)  # 60 s after it last published
    assert agents(mine) == alone


def test_a_restarted_worker_that_restores_its_summaries_flags_what_it_would_have(
    events: list[ActionEvent],
) -> None:
    rules = load_rules()
    cut = int(len(events) * 0.6)
    uninterrupted = Engine(rules, worker_id="w")
    expected = []
    for i, event in enumerate(events):
        found = uninterrupted.process(event) or []
        if i >= cut:
            expected += [key(a) for a in found]
    before = Engine(rules, worker_id="w")
    for event in events[:cut]:
        before.process(event)
    published = orjson.loads(orjson.dumps(before.fleet_partials()))
    runs = {}
    for name in ("restored", "cold"):
        after = Engine(rules, worker_id="w")
        after.baselines = copy.deepcopy(before.baselines)  # what the state table restores
        after.states = copy.deepcopy(before.states)
        if name == "restored":
            for fleet, partials in published.items():
                after.restore(fleet, partials)
        runs[name] = [key(a) for event in events[cut:] for a in after.process(event) or []]
    assert expected, "the second part must raise anomalies for this to mean anything"
    assert runs["restored"] == expected
    assert runs["cold"] != expected  # what starting cold cost before


def test_a_partial_of_another_detector_or_version_is_left_alone(
    events: list[ActionEvent],
) -> None:
    rules = load_rules()
    mine, theirs = Engine(rules, worker_id="a"), Engine(rules, worker_id="b")
    for event in events[:6000]:
        (mine if home_partition(event.agent_id, 2) == 0 else theirs).process(event)
    fleet: Any = mine.fleet_states[("FailureRate", "support-2")]["failure_rate"]
    alone = fleet.fleet_agents()
    partials = theirs.fleet_partials()["support-2"]
    assert partials["FailureRate"][0] == "failure_rate"
    renamed = {**partials, "FailureRate": ["novelty", partials["FailureRate"][1]]}
    mine.absorb("b", "support-2", renamed, now=0.0)  # the rule runs another detector there
    assert fleet.fleet_agents() == alone
    broken = {**partials, "FailureRate": ["failure_rate", {"n": 3}]}  # another version
    mine.absorb("b", "support-2", broken, now=1.0)
    assert fleet.fleet_agents() == alone
    mine.absorb("b", "support-2", partials, now=2.0)
    assert fleet.fleet_agents() > alone
    # the restore runs beside ingest: a rule that already folded events keeps its state
    local = set(fleet.agents.local)
    assert mine.restore("support-2", partials) is False
    assert fleet.agents.local == local and local
    # a summary from before a restart that does not load: this worker's part starts cold,
    # nothing half-loaded, and the other workers' part is merged again
    restarted = Engine(rules, worker_id="a")
    restarted.absorb("b", "support-2", partials, now=3.0)
    restarted.restore("support-2", broken)
    fleet = restarted.fleet_states[("FailureRate", "support-2")]["failure_rate"]
    their: Any = theirs.fleet_states[("FailureRate", "support-2")]["failure_rate"]
    assert fleet.agents.local == set()
    assert fleet.fleet_agents() == len(their.agents.local) > 0


def test_an_agent_that_moved_between_workers_is_counted_once(
    events: list[ActionEvent],
) -> None:
    rules = load_rules()
    old, new = Engine(rules, worker_id="old"), Engine(rules, worker_id="new")
    support = [e for e in events if e.fleet == "support-2"]
    for event in support[:3000]:
        old.process(event)
    moved = support[3000].agent_id  # a rebalance gives this agent to the other worker
    new.absorb("old", "support-2", old.fleet_partials()["support-2"], now=0.0)
    for event in support[3000:]:
        if event.agent_id == moved:
            new.process(event)
    new.absorb("old", "support-2", old.fleet_partials()["support-2"], now=1.0)
    whole = len({e.agent_id for e in support[:3000]} | {moved})
    fleet: Any = new.fleet_states[("NovelDestination", "support-2")]["f"]
    assert fleet.fleet_agents() == whole
    storms: Any = new.fleet_states[("FailureRate", "support-2")]["failure_rate"]
    assert storms.fleet_agents() <= whole
