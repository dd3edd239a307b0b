from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.calibration import BudgetThreshold
from agentwatch.detectors.runaway_loop import RunawayLoop, _learn
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.lab.sim.world import parse_world
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START = datetime(2026, 1, 5, 9, 25, tzinfo=UTC)

Found = list[tuple[ActionEvent, Finding]]


class Replay:
    """The engine's contract for one detector: baselines before each event, fleet states."""

    def __init__(self, detector: RunawayLoop) -> None:
        self.detector = detector
        self.baselines: dict[str, AgentBaseline] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.fleets: dict[str, dict[str, Any]] = {}

    def feed(self, events: list[ActionEvent]) -> Found:
        out: Found = []
        for e in events:
            b = self.baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
            state = self.states.setdefault(e.agent_id, {})
            fleet = self.fleets.setdefault(e.fleet, {})
            if not self.detector.skips(e.kind, e.cost_usd > 0):
                out.extend((e, f) for f in self.detector.update(e, b, state, fleet))
            b.update(e)
        return out


def call(
    i: int,
    seconds: float,
    action: str,
    target: str | None,
    kind: str = "tool",
    agent: str = "a1",
    fleet: str = "default",
) -> ActionEvent:
    return ActionEvent(
        event_id=f"{agent}-e{i}",
        agent_id=agent,
        fleet=fleet,
        action=action,
        target=target,
        kind=kind,  # type: ignore[arg-type]
        ts=T0 + timedelta(seconds=seconds),
    )


def varied(agent: str, n: int, start: float, step: float, fleet: str = "default") -> list[Any]:
    """Normal work: three tools over seven targets, never the same pair twice in a row."""
    return [
        call(
            i,
            start + step * i,
            ("search", "read", "reply")[i % 3],
            f"t{i % 7}",
            "tool",
            agent,
            fleet,
        )
        for i in range(n)
    ]


def loop(
    agent: str, first: int, n: int, start: float, step: float, fleet: str = "default"
) -> list[Any]:
    return [
        call(first + i, start + step * i, "search", "doc-1", "tool", agent, fleet) for i in range(n)
    ]


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["runaway_loop"] is RunawayLoop
    detector = RunawayLoop(false_alarms_per_agent_day=0.1, min_run=4, ignore_kinds=[])
    assert detector.clone().params() == detector.params()
    assert json.loads(json.dumps(detector.params())) == detector.params()
    with pytest.raises(ValueError, match="false_alarms_per_agent_day"):
        RunawayLoop(false_alarms_per_agent_day=0)
    with pytest.raises(ValueError, match="min_run"):
        RunawayLoop(min_run=1)
    with pytest.raises(ValueError, match="min_speedup"):
        RunawayLoop(min_speedup=-1)


def test_inlined_learning_is_budget_thresholds_learn_one() -> None:
    rng = random.Random(3)
    reference = BudgetThreshold(0.01, 1.0)
    state: list[float | None] = [0.0, 0.0, 0.0, 0.0, 100.0, 100.0]
    keep = 0.5 ** (1.0 / reference.half_life)
    for i in range(3000):
        run = float(1 + int(rng.expovariate(2.0)))
        reference.learn_one(run, ts=100.0 + 7.0 * i)
        _learn(state, run, 100.0 + 7.0 * i, keep)
    assert state == pytest.approx(reference.to_state())


@cache
def loop_sim() -> Simulation:
    specs = (
        IncidentSpec("runaway_loop", "support-001", START, START + timedelta(minutes=5)),
        IncidentSpec("runaway_loop", "ops-000", START, START + timedelta(minutes=5)),
    )
    return Simulation(
        SimConfig(agents=24, minutes=45, seed=21, incidents=(), explicit_incidents=specs)
    )


def test_catches_simulated_loops_within_a_minute_and_nothing_else() -> None:
    # classic loops repeat 12 (ops-000) to 60 times a minute: about 13 calls are needed
    sim = loop_sim()
    replay = Replay(RunawayLoop())
    found = replay.feed(list(sim.events(validate=False)))
    assert {e.agent_id for e, _ in found} == {"support-001", "ops-000"}
    labels = {lab.agent_id: lab for lab in sim.labels() if lab.kind == "runaway_loop"}
    for agent, label in labels.items():
        mine = [(e, f) for e, f in found if e.agent_id == agent]
        first_event, first = mine[0]
        assert START <= first_event.ts <= START + timedelta(seconds=75)
        assert first.kind == "runaway_loop"
        assert first_event.action == label.params["action"] == first.actions[0]
        assert label.params["target"] in first.summary
        assert first.observed == first.score >= first.threshold >= 5
        assert f"{first.observed:.0f} times in a row" in first.summary
        assert first.evidence[0] == first_event.event_id and len(first.evidence) <= 11
        assert all(e.ts <= START + timedelta(minutes=10) for e, _ in mine)
    sizes = [len(json.dumps(state)) for state in replay.states.values()]
    assert max(sizes) < 512


def test_silent_on_normal_traffic() -> None:
    sim = Simulation(SimConfig(agents=40, minutes=60, seed=4, incidents=()))
    assert Replay(RunawayLoop()).feed(list(sim.events(validate=False))) == []


WORLD = """
name: loops
seed: 12
minutes: 150
warmup_minutes: 40
error_bursts_per_hour: 2
diurnal: {amplitude: 0.0}
fleets:
  - {name: support, role: support, agents: 10, rate_per_min: {median: 1.0, min: 0.2, max: 6}}
  - {name: analyst, role: analyst, agents: 8, rate_per_min: {median: 6, min: 2, max: 20}}
incidents:
  - {kind: runaway_loop, fleet: support, intensity: 0.0, llm_between: true, new_agent: false}
  - {kind: runaway_loop, fleet: support, intensity: 0.0, llm_between: false, new_agent: true}
  - {kind: runaway_loop, fleet: analyst, intensity: 0.0, llm_between: false, new_agent: false}
  - {kind: runaway_loop, fleet: analyst, intensity: 0.5, llm_between: true, new_agent: true}
"""


def test_slowest_loops_caught_with_and_without_llm_calls_old_and_new_agents() -> None:
    world = parse_world(WORLD.encode(), "loops.yml")
    sim = Simulation(world.config)
    found = Replay(RunawayLoop()).feed(sim.event_list())
    labels = [lab for lab in sim.labels() if lab.kind == "runaway_loop"]
    assert len(labels) == 4
    assert {(lab.params["llm_between"], lab.params["new_agent"]) for lab in labels} == {
        (True, False),
        (False, True),
        (False, False),
        (True, True),
    }
    for lab in labels:
        mine = [e for e, _ in found if e.agent_id == lab.agent_id]
        assert mine, f"loop of {lab.agent_id} ({lab.params}) not flagged"
        assert 0 <= mine[0].ts_epoch - lab.start_s <= 60, lab.params
    assert {e.agent_id for e, _ in found} == {lab.agent_id for lab in labels}


def test_llm_calls_between_tool_calls_neither_count_nor_break_the_run() -> None:
    events = []
    for i in range(40):
        events.append(call(2 * i, 3 * i, "chat", None, kind="llm"))
        events.append(call(2 * i + 1, 3 * i + 1, "search", "q=refund"))
    found = Replay(RunawayLoop()).feed(events)
    assert found and {e.action for e, _ in found} == {"search"}
    # a brand-new agent of a fleet with no history: the prior's bar, about ten calls
    first = found[0][1]
    assert 8 <= first.observed <= 12
    assert found[0][1].summary.startswith(
        f"a1 called search on 'q=refund' {first.observed:.0f} times"
    )
    assert found[0][0].event_id == f"a1-e{2 * (int(first.observed) - 1) + 1}"


def test_a_busy_agent_alternating_on_one_target_is_not_a_loop() -> None:
    events = []
    for i in range(300):  # one ticket read every other call, the rest varied
        target = "ticket:1" if i % 2 == 0 else f"kb:{i}"
        events.append(call(i, 2 * i, "read", target))
    assert Replay(RunawayLoop()).feed(events) == []


def test_a_new_agent_is_judged_by_its_fleets_habits() -> None:
    rng = random.Random(5)
    repetitive: list[ActionEvent] = []
    calm: list[ActionEvent] = []
    for agent in range(12):
        t, i = 0.0, 0
        while t < 6 * 3600:  # the "batch" fleet runs one query several times in a row
            pair = f"table{rng.randrange(50)}"
            for _ in range(1 + int(rng.expovariate(0.6))):
                repetitive.append(call(i, t, "query", pair, agent=f"b{agent}", fleet="batch"))
                i, t = i + 1, t + 6.0
        calm += varied(f"c{agent}", 3600, 0.0, 6.0, fleet="calm")
    replay = Replay(RunawayLoop())
    found = replay.feed(sorted(repetitive + calm, key=lambda e: e.ts))
    # until the fleets have shown their habits, the prior's bar (about ten calls) holds: a
    # fleet this repetitive trips it in its first minutes, and never once it has learned
    assert all(e.agent_id.startswith("b") and e.ts < T0 + timedelta(minutes=20) for e, _ in found)
    late = 6 * 3600 + 60.0
    new_batch = replay.feed(loop("b-new", 0, 60, late, 2.0, fleet="batch"))
    new_calm = replay.feed(loop("c-new", 0, 60, late, 2.0, fleet="calm"))
    first_batch, first_calm = new_batch[0][1], new_calm[0][1]
    # the fleet that repeats itself needs a longer run before a new agent is flagged
    assert first_calm.threshold < first_batch.threshold
    assert first_calm.observed < first_batch.observed <= 60
    assert first_calm.baseline < first_batch.baseline  # its runs are longer on average


def test_the_flagged_loop_is_not_learned() -> None:
    replay = Replay(RunawayLoop())
    assert replay.feed(varied("a1", 3000, 0.0, 20.0)) == []
    calls = loop("a1", 10_000, 150, 60_000.0, 1.5)  # 40 a minute, 150 calls
    first = replay.feed(calls[:1])  # ends (and learns) the last normal run
    before = list(replay.states["a1"]["t"])
    fleet_before = list(replay.fleets["default"]["t"].view())
    first += replay.feed(calls[1:])
    assert len(first) > 100
    replay.feed(varied("a1", 1, 60_300.0, 20.0))  # ends the run
    assert replay.states["a1"]["t"] == pytest.approx(before)  # nothing learned
    assert replay.fleets["default"]["t"].view() == pytest.approx(fleet_before)
    again = replay.feed(loop("a1", 20_000, 150, 61_000.0, 1.5))
    # the same bar as the first time: the loop did not raise it
    assert again[0][1].threshold == pytest.approx(first[0][1].threshold, rel=0.01)
    assert again[0][1].observed == first[0][1].observed


def test_polling_one_target_at_the_agents_own_pace_is_not_a_runaway() -> None:
    replay = Replay(RunawayLoop())
    assert replay.feed(varied("a1", 600, 0.0, 60.0)) == []  # one call a minute
    # the same target every minute for an hour: its usual pace, however long the run
    assert replay.feed(loop("a1", 1000, 60, 36_000.0, 60.0)) == []
    # the same target ten times faster than its pace is a runaway
    replay.feed(varied("a1", 1, 40_000.0, 60.0))
    found = replay.feed(loop("a1", 2000, 30, 40_100.0, 6.0))
    assert found and "10x its pace before the run" in found[0][1].summary
    # without the pace condition, the slow poll is flagged too
    plain = Replay(RunawayLoop(min_speedup=0))
    plain.feed(varied("a1", 600, 0.0, 60.0))
    assert plain.feed(loop("a1", 1000, 60, 36_000.0, 60.0))


def test_a_smaller_budget_asks_for_a_longer_run() -> None:
    thresholds = []
    for budget in (0.1, 0.01, 0.001):
        replay = Replay(RunawayLoop(false_alarms_per_agent_day=budget))
        replay.feed(varied("a1", 2000, 0.0, 20.0))
        found = replay.feed(loop("a1", 5000, 100, 50_000.0, 1.5))
        thresholds.append(found[0][1].threshold)
    assert thresholds[0] < thresholds[1] < thresholds[2]


def test_every_call_of_a_flagged_run_is_a_finding_with_the_runs_first_call() -> None:
    replay = Replay(RunawayLoop())
    replay.feed(varied("a1", 500, 0.0, 20.0))
    found = replay.feed(loop("a1", 1000, 30, 20_000.0, 1.5))
    flagged_at = int(found[0][1].observed)
    assert [int(f.observed) for _, f in found] == list(range(flagged_at, 31))
    assert all(f.evidence[-1] == "a1-e1000" for _, f in found)
    assert found[-1][1].evidence[0] == "a1-e1029" and len(found[-1][1].evidence) == 11


def test_many_distinct_targets_keep_the_state_bounded() -> None:
    events = [call(i, i, "read_file", f"/w/{i}.py") for i in range(5000)]
    replay = Replay(RunawayLoop())
    assert replay.feed(events) == []
    assert len(json.dumps(replay.states["a1"])) < 300


def test_state_of_the_previous_version_is_dropped_not_misread() -> None:
    replay = Replay(RunawayLoop())
    old = {"*": [29000000, 3, 1], "2821353829": [29000000, 3, 0, ["e1", "e2"]]}
    replay.states["a1"] = dict(old)
    assert replay.feed(varied("a1", 3, 0.0, 20.0)) == []
    state = replay.states["a1"]
    assert not set(old) & set(state)
    assert state["k"] and state["n"] == 1 and state["t"][1] == 2.0  # two runs learned
