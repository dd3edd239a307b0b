from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.mix_shift import MixShift
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
USUAL = {
    "read_ticket": 0.4,
    "search_kb": 0.25,
    "reply_ticket": 0.2,
    "lookup_order": 0.1,
    "refund": 0.05,
}


class Agent:
    def __init__(self, detector: MixShift) -> None:
        self.detector = detector
        self.baseline = AgentBaseline("s1", "support")
        self.state: dict[str, Any] = {}
        self.n = 0

    def feed(self, action: str, kind: str = "tool") -> list[Finding]:
        event = ActionEvent(
            event_id=f"e{self.n}",
            agent_id="s1",
            fleet="support",
            action=action,
            kind=kind,  # type: ignore[arg-type]
            ts=T0 + timedelta(seconds=10 * self.n),
        )
        self.n += 1
        found = self.detector.update(event, self.baseline, self.state, {})
        self.baseline.update(event)
        return found

    def run(self, mix: dict[str, float], calls: int, rng: random.Random) -> list[Finding]:
        names, weights = list(mix), list(mix.values())
        out = []
        for action in rng.choices(names, weights, k=calls):
            out += self.feed("chat", kind="llm")
            out += self.feed(action)
        return out


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["mix_shift"] is MixShift
    detector = MixShift(threshold=0.4, window=20)
    assert detector.clone().params() == detector.params()
    assert json.loads(json.dumps(detector.params())) == detector.params()
    with pytest.raises(ValueError):
        MixShift(window=1)


def test_fires_on_a_shift_with_the_numbers_and_not_on_sampling_noise() -> None:
    rng = random.Random(3)
    agent = Agent(MixShift())
    assert agent.run(USUAL, 2000, rng) == []
    shifted = {"refund": 0.5, "reply_ticket": 0.3, "read_ticket": 0.2}  # TVD 0.55
    found = agent.run(shifted, 60, rng)
    assert found
    first = found[0]
    assert first.kind == "mix_shift" and first.threshold == 0.5
    assert first.score == first.observed >= 0.5
    assert "s1's last 30 calls moved away from its long-run mix" in first.summary
    assert "refund" in first.summary and "(expected 5%)" in first.summary
    assert first.actions[0] == "refund"
    assert len(json.dumps(agent.state)) < 1024


def test_flagged_windows_are_not_learned() -> None:
    rng = random.Random(5)
    agent = Agent(MixShift())
    agent.run(USUAL, 600, rng)
    learned = None
    flagged = 0
    for _ in range(200):
        found = agent.feed("refund")
        if found and learned is None:
            learned = list(agent.state["h"])  # the long run as of the first finding
        flagged += len(found)
    assert flagged >= 30  # flagged every check: the new mix never became normal
    assert agent.state["h"] == learned


def test_llm_calls_and_a_small_new_tool_do_not_move_the_mix() -> None:
    rng = random.Random(8)
    agent = Agent(MixShift())
    agent.run(USUAL, 600, rng)
    rolled = {name: 0.85 * w for name, w in USUAL.items()} | {"translate_text": 0.15}
    assert agent.run(rolled, 600, rng) == []
    assert "translate_text" in agent.state["v"]


def test_vocabulary_is_bounded() -> None:
    agent = Agent(MixShift(max_actions=4, min_history=10))
    for i in range(200):
        agent.feed(f"tool{i % 50}")
    assert len(agent.state["v"]) == 4 and "" in agent.state["v"]  # "" = every other action
    assert len(json.dumps(agent.state)) < 512


def test_simulated_mix_shift_is_caught_and_fleet_changes_are_not() -> None:
    start = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
    spec = IncidentSpec("mix_shift", "support-003", start, start + timedelta(minutes=15))
    sim = Simulation(
        SimConfig(agents=16, minutes=90, seed=7, incidents=(), explicit_incidents=(spec,))
    )
    detector = MixShift()
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    found = []
    for e in sim.events(validate=False):
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        found += [(e, f) for f in detector.update(e, b, states.setdefault(e.agent_id, {}), {})]
        b.update(e)
    assert found
    assert {e.agent_id for e, _ in found} == {"support-003"}
    assert start <= found[0][0].ts <= start + timedelta(minutes=10)


def test_a_fleet_wide_change_moves_every_agents_expectation() -> None:
    rng = random.Random(11)
    detector = MixShift()
    fleet_state: dict[str, Any] = {}
    agents: dict[str, tuple[AgentBaseline, dict[str, Any]]] = {
        f"s{n}": (AgentBaseline(f"s{n}", "support"), {}) for n in range(12)
    }
    clock = [0]

    def step(mix: dict[str, float], lone: dict[str, float] | None = None) -> list[str]:
        flagged = []
        for agent, (baseline, state) in agents.items():
            use = lone if lone is not None and agent == "s0" else mix
            [action] = rng.choices(list(use), list(use.values()))
            clock[0] += 1
            event = ActionEvent(
                event_id=f"e{clock[0]}",
                agent_id=agent,
                fleet="support",
                action=action,
                ts=T0 + timedelta(seconds=clock[0]),
            )
            if detector.update(event, baseline, state, fleet_state):
                flagged.append(agent)
            baseline.update(event)
        return flagged

    for _ in range(400):
        assert step(USUAL) == []
    rolled = {name: 0.5 * w for name, w in USUAL.items()} | {"translate_text": 0.5}
    flagged = [agent for _ in range(300) for agent in step(rolled)]
    assert flagged == []  # TVD 0.5 against each agent's own past, but the whole fleet moved
    alone = {"refund": 0.6, "reply_ticket": 0.4}
    flagged = [agent for _ in range(60) for agent in step(rolled, lone=alone)]
    assert set(flagged) == {"s0"}


def test_checks_when_the_ring_fills_then_every_check_every_calls() -> None:
    # threshold 0 reports every check that has a long run to compare with
    agent = Agent(MixShift(threshold=0.0, window=32, check_every=5, min_history=0))
    reported = [i for i in range(32) if agent.feed(f"tool{i % 3}")]
    assert reported == [] and agent.state["n"] == 0  # checked at the 32nd: nothing learned
    reported = [i for i in range(32, 60) if agent.feed(f"tool{i % 3}")]
    assert reported == [36, 41, 46, 51, 56]
    assert agent.state["q"] == ["tool0", "tool1", "tool2"]  # calls 57-59 wait for the next
    assert len(agent.state["r"]) == 32


def test_a_state_saved_before_the_queue_existed_continues() -> None:
    agent = Agent(MixShift(threshold=2.0, window=10, check_every=5, min_history=0))
    for i in range(40):
        agent.feed(f"tool{i % 4}")
    assert agent.state["q"] == [] and sum(agent.state["h"]) == 30  # 30 left the ring
    del agent.state["q"], agent.state["x"]  # the format before this version
    for _ in range(5):
        agent.feed("tool1")
    assert agent.state["q"] == [] and agent.state["n"] == 0  # folded and checked at the 5th
    assert sum(agent.state["h"]) == 35
