from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.cost_spike import CostSpike
from agentwatch.lab.sim import MODEL_PRICES, IncidentSpec, SimConfig, Simulation, llm_cost
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def call(
    agent: str, i: int, tokens: int, model: str = "gpt-4o-mini", *, seconds: float | None = None
) -> ActionEvent:
    return ActionEvent(
        event_id=f"{agent}-{i}",
        agent_id=agent,
        fleet="support",
        ts=T0 + timedelta(seconds=10.0 * i if seconds is None else seconds),
        action="chat",
        kind="llm",
        model=model,
        input_tokens=tokens,
        output_tokens=300,
        cost_usd=llm_cost(model, tokens, 300),
    )


class Replay:
    """Feeds events to one detector the way the engine does (baseline updated after)."""

    def __init__(self, detector: CostSpike) -> None:
        self.detector = detector
        self.baselines: dict[str, AgentBaseline] = {}
        self.states: dict[str, dict[str, Any]] = {}
        self.fleets: dict[str, dict[str, Any]] = {}
        self.found: list[tuple[ActionEvent, Finding]] = []

    def __call__(self, event: ActionEvent) -> list[Finding]:
        b = self.baselines.setdefault(event.agent_id, AgentBaseline(event.agent_id, event.fleet))
        state = self.states.setdefault(event.agent_id, {})
        out = self.detector.update(event, b, state, self.fleets.setdefault(event.fleet, {}))
        b.update(event)
        self.found.extend((event, f) for f in out)
        return out


def steady(replay: Replay, calls: int, agents: int = 6, model: str = "gpt-4o-mini") -> None:
    for i in range(calls):
        for k in range(agents):
            replay(call(f"a{k}", i, 2500 + 150 * ((i * 7 + k) % 9), model))


def test_registered() -> None:
    assert DETECTORS["cost_spike"] is CostSpike


def test_context_stuffing_fires_with_the_numbers() -> None:
    replay = Replay(CostSpike(min_spend_per_min=0.001))
    steady(replay, 200)
    for i in range(200, 206):  # a0 stuffs 8x the context
        out = replay(call("a0", i, 24_000))
    assert out, "still flagged on the sixth stuffed call"
    assert {e.agent_id for e, _ in replay.found} == {"a0"}
    first_event, first = replay.found[0]
    # calls cost 5.9x; the recent level (half-life 3 calls) reaches 3x on the fifth one
    assert first_event.event_id == "a0-204"
    assert first.kind == "cost_spike" and first.score >= first.threshold == 5.0
    assert "x its usual" in first.summary and "gpt-4o-mini" in first.summary
    assert first.observed > 3.0 * first.baseline
    assert first.evidence[0] == first_event.event_id and len(first.evidence) <= 5


def test_a_fleet_wide_model_upgrade_is_silent() -> None:
    replay = Replay(CostSpike(min_spend_per_min=0.0))
    steady(replay, 200)
    steady_after = 100
    for i in range(200, 200 + steady_after):  # everyone moves to a 6x pricier model
        for k in range(6):
            replay(call(f"a{k}", i, 2500 + 150 * ((i * 7 + k) % 9), "claude-3-5-haiku"))
    assert MODEL_PRICES["claude-3-5-haiku"][0] > 5 * MODEL_PRICES["gpt-4o-mini"][0]
    assert replay.found == []


def test_one_agent_alone_on_a_premium_model_fires_after_confirmation() -> None:
    detector = CostSpike(min_spend_per_min=0.0)
    replay = Replay(detector)
    steady(replay, 200)
    flagged_at = None
    for i in range(200, 220):
        for k in range(6):
            model = "claude-sonnet-4" if k == 0 else "gpt-4o-mini"
            if replay(call(f"a{k}", i, 2600, model)) and flagged_at is None:
                flagged_at = i
    assert flagged_at is not None
    # not before confirm_s (30 s = 3 calls here) on a model no peer uses
    assert 203 <= flagged_at <= 206
    assert "claude-sonnet-4" in replay.found[0][1].summary


def test_cheap_agents_do_not_page_and_spend_is_reported() -> None:
    replay = Replay(CostSpike(min_spend_per_min=0.05))
    steady(replay, 200)
    for i in range(200, 210):
        replay(call("a0", i, 24_000))  # 8x, but about 2 cents per minute
    assert replay.found == []
    rich = Replay(CostSpike(min_spend_per_min=0.001))
    steady(rich, 200)
    for i in range(200, 210):
        rich(call("a0", i, 24_000))
    assert rich.found and "spending $0.02" in rich.found[0][1].summary


def test_flagged_calls_are_not_learned() -> None:
    replay = Replay(CostSpike(min_spend_per_min=0.0))
    steady(replay, 200)
    for i in range(200, 202):
        replay(call("a0", i, 40_000))
    state = replay.states["a0"]
    own, price = list(state["own"]), state["v"][2]
    fleet_before = copy.deepcopy(replay.fleets["support"]["cost_spike"].level)
    out = replay(call("a0", 202, 40_000))
    assert out
    assert state["own"] == own and state["v"][2] == price
    assert replay.fleets["support"]["cost_spike"].level == fleet_before


def test_state_is_json_and_small() -> None:
    replay = Replay(CostSpike())
    steady(replay, 300)
    for state in replay.states.values():
        text = json.dumps(state)
        assert len(text) < 1024
        assert json.loads(text) == state


@cache
def explosion_sim() -> Simulation:
    specs = (
        IncidentSpec("cost_explosion", "coder-000", START + timedelta(minutes=45),
                     START + timedelta(minutes=55)),
        IncidentSpec("cost_explosion", "support-001", START + timedelta(minutes=50),
                     START + timedelta(minutes=58)),
    )  # fmt: skip
    return Simulation(
        SimConfig(agents=40, minutes=70, seed=5, incidents=(), explicit_incidents=specs,
                  benign_changes=("model_upgrade",))
    )  # fmt: skip


def test_simulated_fleet_explosions_caught_fast_and_nothing_else() -> None:
    sim = explosion_sim()
    replay = Replay(CostSpike())
    for event in sim.events(validate=False):
        replay(event)
    agents = {e.agent_id for e, _ in replay.found}
    assert agents == {"coder-000", "support-001"}  # and none of the upgraded analysts
    for spec in sim.incidents():
        hits = [e.ts for e, _ in replay.found if e.agent_id == spec.agent_id]
        assert spec.start <= min(hits) <= spec.start + timedelta(seconds=90)
        assert max(hits) <= spec.end + timedelta(minutes=5)


def test_params_round_trip() -> None:
    detector = CostSpike()
    assert type(detector)(**detector.params()).params() == detector.params()
    assert detector.clone().params() == detector.params()
    assert all(not key.startswith("_") for key in detector.params())
