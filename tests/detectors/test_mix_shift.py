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
    "lookup_order": 0.12,
    "refund": 0.03,
}


class Agent:
    """One agent fed call by call; ``gap_s`` apart, an LLM call before each tool call."""

    def __init__(
        self,
        detector: MixShift,
        agent_id: str = "s1",
        fleet_state: dict[str, Any] | None = None,
        gap_s: float = 10.0,
    ) -> None:
        self.detector = detector
        self.agent_id = agent_id
        self.baseline = AgentBaseline(agent_id, "support")
        self.state: dict[str, Any] = {}
        self.fleet_state: dict[str, Any] = {} if fleet_state is None else fleet_state
        self.gap_s = gap_s
        self.n = 0
        self.clock = 0.0

    def feed(self, action: str, kind: str = "tool", status: str = "ok") -> list[Finding]:
        event = ActionEvent(
            event_id=f"{self.agent_id}-e{self.n}",
            agent_id=self.agent_id,
            fleet="support",
            action=action,
            kind=kind,  # type: ignore[arg-type]
            status=status,  # type: ignore[arg-type]
            ts=T0 + timedelta(seconds=self.clock),
        )
        self.n += 1
        self.clock += self.gap_s
        found = self.detector.update(event, self.baseline, self.state, self.fleet_state)
        self.baseline.update(event)
        return found

    def run(self, mix: dict[str, float], calls: int, rng: random.Random) -> list[Finding]:
        names, weights = list(mix), list(mix.values())
        out = []
        for action in rng.choices(names, weights, k=calls):
            out += self.feed("chat", kind="llm")
            out += self.feed(action)
        return out


def first_alarm(agent: Agent, mix: dict[str, float], calls: int, rng: random.Random) -> int | None:
    """The call (1-based) of ``mix`` on which the first finding came, if any."""
    names, weights = list(mix), list(mix.values())
    for i, action in enumerate(rng.choices(names, weights, k=calls), 1):
        if agent.feed(action):
            return i
    return None


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["mix_shift"] is MixShift
    detector = MixShift(false_alarms_per_agent_day=0.01, shift=0.3)
    assert detector.clone().params() == detector.params()
    assert json.loads(json.dumps(detector.params())) == detector.params()
    for bad in ({"shift": 0.0}, {"false_alarms_per_agent_day": 0.0}, {"max_actions": 1}):
        with pytest.raises(ValueError):
            MixShift(**bad)  # type: ignore[arg-type]


def test_fires_on_a_shift_to_a_rare_action_with_the_numbers_and_not_on_noise() -> None:
    rng = random.Random(3)
    agent = Agent(MixShift())
    assert agent.run(USUAL, 3000, rng) == []  # ~100 h of this agent's normal mix: silent
    shifted = {"refund": 0.5, "reply_ticket": 0.3, "read_ticket": 0.2}
    found = agent.run(shifted, 40, rng)
    assert found
    first = found[0]
    assert first.kind == "mix_shift" and first.actions == ("refund",)
    assert first.score >= first.threshold > 4.0  # the floor
    assert 0.02 <= first.baseline <= 0.05  # refund's expected share: its usual 3 %
    assert "s1 called refund" in first.summary and "false alarms per agent-day" in first.summary
    # the evidence is the refund calls themselves, newest first
    refunds = [e for e in first.evidence]
    assert refunds and all(e.startswith("s1-e") for e in refunds)
    assert refunds == sorted(refunds, key=lambda e: -int(e.split("e")[-1]))
    assert len(json.dumps(agent.state)) < 1024


def test_evidence_is_counted_in_calls_not_minutes() -> None:
    """A sparse agent and a busy one making the same calls gather the same evidence; the
    sparse one, with fewer chances a day to raise a false alarm, is flagged no later."""
    evidence: dict[float, list[float]] = {}
    alarms: dict[float, int | None] = {}
    for gap in (2.0, 900.0):  # a call every 2 s, or every 15 minutes
        agent = Agent(MixShift(), gap_s=gap)
        agent.run(USUAL, 1500, random.Random(4))
        refund = agent.state["v"].index("refund")
        evidence[gap] = []
        alarms[gap] = None
        rng = random.Random(9)
        for i, action in enumerate(rng.choices(["refund", "read_ticket"], [0.6, 0.4], k=8), 1):
            if agent.feed(action) and alarms[gap] is None:
                alarms[gap] = i
            evidence[gap].append(agent.state["c"][refund][0])
    assert evidence[2.0][:4] == pytest.approx(evidence[900.0][:4], rel=0.01)
    assert evidence[2.0][3] > 5.0
    assert alarms[900.0] is not None
    assert alarms[900.0] <= (alarms[2.0] or 9)


def test_a_larger_budget_flags_sooner() -> None:
    found = {}
    for budget in (0.001, 0.005, 1.0):
        agent = Agent(MixShift(false_alarms_per_agent_day=budget))
        agent.run(USUAL, 2000, random.Random(6))
        found[budget] = first_alarm(agent, USUAL | {"refund": 0.3}, 400, random.Random(2))
    assert found[1.0] is not None and found[0.005] is not None
    assert found[1.0] <= found[0.005] <= (found[0.001] or 10_000)


def test_the_test_restarts_after_a_finding_and_flagged_calls_are_not_learned() -> None:
    rng = random.Random(5)
    agent = Agent(MixShift())
    agent.run(USUAL, 1500, rng)
    refund = agent.state["v"].index("refund")
    learned = None
    findings = 0
    for _ in range(300):
        found = agent.feed("refund")
        if found and learned is None:
            learned = agent.state["h"][refund]
            assert agent.state["c"][refund][0] == 0.0  # restarted: evidence gathered anew
        findings += len(found)
    assert learned is not None
    assert findings >= 3  # the shift goes on: found again on fresh evidence, more than once
    assert agent.state["h"][refund] == learned  # ... and never learned
    # back to normal: the flag clears once the test settles, then the usual mix is learned
    agent.run(USUAL, 400, rng)
    assert agent.state["f"] == -1
    assert agent.state["t"] > 1500


def test_retries_of_a_failed_call_are_not_counted() -> None:
    agent = Agent(MixShift())
    agent.run(USUAL, 500, random.Random(1))
    calls = agent.state["i"]
    for _ in range(20):  # a tool outage: every call fails and is retried at once, twice
        agent.feed("lookup_order", status="error")
        agent.feed("lookup_order", status="error")
        agent.feed("lookup_order", status="ok")
        agent.feed("read_ticket")
    assert agent.state["i"] == calls + 40


def test_a_rollout_moves_every_agents_expectation_and_a_lone_shift_stands_out() -> None:
    rng = random.Random(11)
    detector = MixShift()
    fleet: dict[str, Any] = {}
    agents = [Agent(detector, f"s{n}", fleet, gap_s=30.0) for n in range(12)]

    def step(mix: dict[str, float], lone: dict[str, float] | None = None) -> set[str]:
        flagged = set()
        for agent in agents:
            use = lone if lone is not None and agent.agent_id == "s0" else mix
            [action] = rng.choices(list(use), list(use.values()))
            if agent.feed(action):
                flagged.add(agent.agent_id)
        return flagged

    for _ in range(400):
        assert step(USUAL) == set()
    # a new tool for everyone, at 15 % of every agent's calls: unevenly adopted is fine too
    for _ in range(400):
        heavy = {name: 0.7 * w for name, w in USUAL.items()} | {"translate_text": 0.3}
        rolled = {name: 0.85 * w for name, w in USUAL.items()} | {"translate_text": 0.15}
        assert step(rolled, lone=heavy) == set()
    alone = {"refund": 0.6, "reply_ticket": 0.4}
    flagged = set().union(*(step(rolled, lone=alone) for _ in range(60)))
    assert flagged == {"s0"}


def test_an_action_new_to_the_fleet_is_left_to_novelty() -> None:
    agent = Agent(MixShift(establish_s=3600.0), gap_s=5.0)
    agent.run(USUAL, 1000, random.Random(2))
    found = [f for _ in range(200) for f in agent.feed("delete_bucket")]  # 1,000 s: too new
    assert found == []
    assert agent.state["c"][agent.state["v"].index("delete_bucket")][0] == 0.0


def test_vocabulary_is_bounded_and_the_state_stays_small() -> None:
    agent = Agent(MixShift(max_actions=4))
    for i in range(400):
        agent.feed(f"tool{i % 50}")
    assert len(agent.state["v"]) == 4 and "" in agent.state["v"]  # "" = every other action
    assert len(json.dumps(agent.state)) < 700


def test_state_survives_a_restart_as_json() -> None:
    rng = random.Random(8)
    detector = MixShift()
    agent = Agent(detector)
    agent.run(USUAL, 1200, rng)
    agent.state = json.loads(json.dumps(agent.state))
    agent.fleet_state = {}  # a new process: the fleet's memory is rebuilt from traffic
    assert agent.run(USUAL, 200, rng) == []
    assert agent.run({"refund": 0.7, "read_ticket": 0.3}, 60, rng)


def test_simulated_mix_shift_is_caught_and_nobody_else_is_flagged() -> None:
    start = datetime(2026, 1, 5, 10, 30, tzinfo=UTC)
    spec = IncidentSpec("mix_shift", "support-003", start, start + timedelta(minutes=15))
    sim = Simulation(
        SimConfig(agents=16, minutes=120, seed=7, incidents=(), explicit_incidents=(spec,))
    )
    detector = MixShift()
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    fleets: dict[str, dict[str, Any]] = {}
    found = []
    for e in sim.events(validate=False):
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        state = states.setdefault(e.agent_id, {})
        found += [(e, f) for f in detector.update(e, b, state, fleets.setdefault(e.fleet, {}))]
        b.update(e)
    assert found
    assert {e.agent_id for e, _ in found} == {"support-003"}
    assert start <= found[0][0].ts <= start + timedelta(minutes=10)


def _first_hour(detector: MixShift, lone: dict[str, float]) -> tuple[set[str], float | None]:
    """Six agents from the monitor's start, 4 s per call each: 250 rounds (1,500 fleet
    calls, 1,000 s), then ``s0`` alone on ``lone`` for 60 calls. Who was flagged, and when
    ``s0`` first was (seconds after the start)."""
    rng = random.Random(5)
    fleet: dict[str, Any] = {}
    agents = [Agent(detector, f"s{n}", fleet, gap_s=2.0) for n in range(6)]
    flagged: set[str] = set()
    when = None
    for round_ in range(310):
        for agent in agents:
            mix = lone if round_ >= 250 and agent.agent_id == "s0" else USUAL
            if agent.run(mix, 1, rng):
                flagged.add(agent.agent_id)
                if agent.agent_id == "s0" and when is None:
                    when = agent.clock
    return flagged, when


def test_an_action_there_from_the_start_is_judged_once_the_fleet_made_establish_calls() -> None:
    """The monitor's first hour: every action is first seen then, but those of the fleet's
    first ``establish_calls`` calls were there before it started, so a shift toward one is
    judged before ``establish_s`` has passed; without the rule it waits the hour."""
    alone = {"refund": 0.6, "reply_ticket": 0.4}
    flagged, when = _first_hour(MixShift(), alone)
    assert flagged == {"s0"}
    assert when is not None and 1000.0 < when < 1300.0  # the hour is far off
    assert _first_hour(MixShift(establish_calls=0), alone) == (set(), None)


def test_an_action_first_called_after_the_opening_still_waits_establish_s() -> None:
    """A tool first called after the fleet's first ``establish_calls`` calls may be a
    rollout: ``novelty``'s for ``establish_s``, as before."""
    flagged, _ = _first_hour(MixShift(), {"translate_text": 0.6, "reply_ticket": 0.4})
    assert flagged == set()


def test_young_agents_of_a_new_fleet_are_not_judged_before_establish_calls() -> None:
    """At the start, the first calls of every agent rest on nobody's habits: judging them at
    once would flag their first calls of any action; nothing fires before the fleet made
    ``establish_calls`` calls."""
    detector = MixShift(establish_calls=1000)
    fleet: dict[str, Any] = {}
    rng = random.Random(3)
    agents = [Agent(detector, f"s{n}", fleet, gap_s=2.0) for n in range(4)]
    for agent in agents:  # each opens with a burst of one action, as agents start tasks
        assert [f for _ in range(8) for f in agent.feed("refund")] == []
    for _ in range(200):  # 4 x (8 + 200) = 832 calls of the fleet
        for agent in agents:
            assert agent.run(USUAL, 1, rng) == []


def test_the_opening_actions_travel_in_the_fleet_partial() -> None:
    detector = MixShift(establish_calls=50)
    one = Agent(detector, "s1")
    for n in range(60):
        one.feed(("read_ticket", "search_kb")[n % 2])
    one.feed("refund")  # after the fleet's first 50 calls: not an opening action
    part = json.loads(json.dumps(detector.fleet_partial(one.fleet_state)))
    assert set(part["o"]) == {"read_ticket", "search_kb"}
    assert set(part["f"]) == {"read_ticket", "search_kb", "refund"}
    other: dict[str, Any] = {}
    detector.fleet_absorb(other, [part])
    assert set(detector.fleet_partial(other)["o"]) == {"read_ticket", "search_kb"}
    restored: dict[str, Any] = {}
    detector.fleet_restore(restored, part)
    assert set(detector.fleet_partial(restored)["o"]) == {"read_ticket", "search_kb"}
    old = {k: v for k, v in part.items() if k != "o"}  # a part from before the rule
    older: dict[str, Any] = {}
    detector.fleet_absorb(older, [old])
    assert detector.fleet_partial(older)["o"] == {}
