from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.budget import Budget
from agentwatch.lab.sim import IncidentSpec, SimConfig, Simulation
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def feed(
    budget: Budget, events: list[ActionEvent]
) -> tuple[list[tuple[ActionEvent, Finding]], dict[str, Any]]:
    baselines: dict[str, AgentBaseline] = {}
    states: dict[str, dict[str, Any]] = {}
    out: list[tuple[ActionEvent, Finding]] = []
    for e in events:
        b = baselines.setdefault(e.agent_id, AgentBaseline(e.agent_id, e.fleet))
        out.extend((e, f) for f in budget.update(e, b, states.setdefault(e.agent_id, {}), {}))
        b.update(e)
    return out, states


def llm(
    i: int, seconds: float, cost: float, agent: str = "a1", fleet: str = "default"
) -> ActionEvent:
    return ActionEvent(
        event_id=f"e{i}",
        agent_id=agent,
        fleet=fleet,
        action="chat",
        kind="llm",
        ts=T0 + timedelta(seconds=seconds),
        cost_usd=cost,
    )


def test_registered_and_params_round_trip() -> None:
    assert DETECTORS["budget"] is Budget
    budget = Budget(
        max_cost_usd=3, max_actions=None, window_s=120, fleets={"coder": {"max_cost_usd": 9}}
    )
    assert budget.clone().params() == budget.params()
    assert json.loads(json.dumps(budget.params())) == budget.params()
    with pytest.raises(ValueError, match="unknown budget keys"):
        Budget(fleets={"coder": {"max_usd": 1}})
    with pytest.raises(ValueError, match="window_s"):
        Budget(window_s=0)


def test_cost_budget_fires_with_the_numbers() -> None:
    budget = Budget(max_cost_usd=2.0, max_actions=None, window_s=60)
    events = [llm(i, 10 * i, 0.01) for i in range(100)]  # $0.06 a minute
    events += [llm(100 + i, 1000 + i, 0.25) for i in range(20)]  # then $0.25 a second
    found, states = feed(budget, events)
    assert found
    first_event, first = found[0]
    # the window is whole 60 s buckets: at t=1007 s it spans [900 s, 1007 s]
    assert first_event.event_id == "e107"
    assert first.kind == "cost_budget"
    assert first.threshold == 1.0 and first.baseline == 2.0
    in_window = [e.cost_usd for e in events[:108] if e.ts >= T0 + timedelta(seconds=900)]
    assert first.observed == pytest.approx(sum(in_window)) == pytest.approx(2.1)
    assert first.score == pytest.approx(first.observed / 2.0)
    assert f"${first.observed:.2f} in the last 60 s" in first.summary
    assert "$2.00 per 60 s" in first.summary
    assert {e.event_id for e, _ in found} == {f"e{i}" for i in range(107, 120)}
    assert len(json.dumps(states)) < 100


def test_action_budget_and_fleet_overrides() -> None:
    budget = Budget(
        max_cost_usd=None, max_actions=50, window_s=60, fleets={"ops": {"max_actions": 200}}
    )
    burst = [llm(i, i * 0.5, 0.0) for i in range(100)]  # 2 calls a second
    found, _ = feed(budget, burst)
    assert found and all(f.kind == "action_budget" for _, f in found)
    assert found[0][1].observed == 51 and "51 calls in the last 60 s" in found[0][1].summary
    ops = [llm(i, i * 0.5, 0.0, fleet="ops") for i in range(100)]
    assert feed(budget, ops)[0] == []
    assert feed(Budget(max_cost_usd=None, max_actions=None), burst)[0] == []


def test_fast_path_agrees_with_summing_the_buckets_every_time() -> None:
    rng = random.Random(7)
    events, t = [], 0.0
    for i in range(3000):
        t += rng.expovariate(1.0 if (i // 300) % 3 else 6.0)  # calm and busy stretches
        events.append(llm(i, t, rng.choice((0.0, 0.001, 0.002, 0.05))))
    budget = Budget(max_cost_usd=4.0, max_actions=400, window_s=120)
    found, _ = feed(budget, events)
    expected = []
    baseline = AgentBaseline("a1")
    for e in events:
        window = baseline.window(120, at=max(e.ts_epoch, baseline.watermark or 0.0))
        if window.cost_usd + e.cost_usd > 4.0:
            expected.append((e.event_id, "cost_budget"))
        if window.count + 1 > 400:
            expected.append((e.event_id, "action_budget"))
        baseline.update(e)
    assert [(e.event_id, f.kind) for e, f in found] == expected
    assert 0 < len(expected) < len(events)


def test_defaults_are_a_flood_guard_silent_on_agents_at_agent_speed() -> None:
    start = datetime(2026, 1, 5, 9, 20, tzinfo=UTC)
    spec = IncidentSpec("runaway_loop", "coder-000", start, start + timedelta(minutes=8))
    sim = Simulation(
        SimConfig(agents=20, minutes=40, seed=5, incidents=(), explicit_incidents=(spec,))
    )
    # a loop at agent speed is the loop detector's job, not the flood guard's
    assert feed(Budget(), list(sim.events(validate=False)))[0] == []
    # a per-fleet budget a team wrote from its own peaks (normal coders peak at 45 here)
    tight = Budget(max_actions=None, fleets={"coder": {"max_actions": 50}})
    found, _ = feed(tight, list(sim.events(validate=False)))
    assert found and {e.agent_id for e, _ in found} == {"coder-000"}
    assert all(start <= e.ts for e, _ in found)
    # a flood of distinct calls, 20 a second: over 600 within the first minute
    flood = [
        ActionEvent(
            event_id=f"f{i}",
            agent_id="crawler",
            action="fetch",
            target=f"https://example.com/{i}",
            ts=T0 + timedelta(seconds=i / 20),
        )
        for i in range(2000)
    ]
    found, _ = feed(Budget(), flood)
    assert found[0][1].kind == "action_budget" and found[0][1].observed == 601
    assert found[0][0].ts - T0 <= timedelta(seconds=31)


def test_no_spend_limit_by_default_one_per_fleet_when_set() -> None:
    pricey = [llm(i, 2.0 * i, 5.0, fleet="research") for i in range(60)]  # $150 a minute
    assert feed(Budget(), pricey)[0] == []
    capped = Budget(fleets={"research": {"max_cost_usd": 100.0, "window_s": 300}})
    found, _ = feed(capped, pricey)
    assert found[0][1].kind == "cost_budget" and found[0][0].event_id == "e20"
    assert "over its budget of $100.00 per 300 s" in found[0][1].summary
