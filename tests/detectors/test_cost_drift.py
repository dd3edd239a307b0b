from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from agentwatch.detectors.base import DETECTORS, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.cost_drift import CostDrift
from agentwatch.lab.sim import llm_cost
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 1, tzinfo=UTC)
AGENTS = 8


def call(agent: int, i: int, tokens: float, model: str = "gpt-4o-mini") -> ActionEvent:
    tokens_in, tokens_out = int(tokens), int(tokens / 10) + 1
    return ActionEvent.model_construct(
        event_id=f"a{agent}-{i}",
        agent_id=f"a{agent}",
        fleet="support",
        ts=T0 + timedelta(seconds=20.0 * i + agent),
        action="chat",
        kind="llm",
        status="ok",
        model=model,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=llm_cost(model, tokens_in, tokens_out),
    )


def run(
    calls: int,
    factor: Any = lambda agent, i: 1.0,
    model: Any = lambda agent, i: "gpt-4o-mini",
    detector: CostDrift | None = None,
    seed: int = 0,
) -> tuple[list[tuple[int, ActionEvent, Finding]], dict[str, dict[str, Any]], dict[str, Any]]:
    """``calls`` rounds of one call per agent; session-like prompt growth and noise."""
    rng = random.Random(seed)
    detector = detector or CostDrift()
    baseline = AgentBaseline("a0", "support")  # not read by this detector
    states: dict[str, dict[str, Any]] = {}
    fleet: dict[str, Any] = {}
    found: list[tuple[int, ActionEvent, Finding]] = []
    for i in range(calls):
        for k in range(AGENTS):
            growth = 1.0 + 0.05 * ((i + 3 * k) % 12)  # prompts grow within a session
            tokens = 3000.0 * growth * factor(k, i) * rng.lognormvariate(0.0, 0.35)
            e = call(k, i, tokens, model(k, i))
            out = detector.update(e, baseline, states.setdefault(e.agent_id, {}), fleet)
            found.extend((i, e, f) for f in out)
    return found, states, fleet


def creep(start: int, length: int, final: float) -> Any:
    def factor(agent: int, i: int) -> float:
        if agent != 0 or i < start:
            return 1.0
        return 1.0 + (final - 1.0) * min((i - start) / length, 1.0)

    return factor


def test_registered() -> None:
    assert DETECTORS["cost_drift"] is CostDrift


def test_silent_on_stationary_traffic() -> None:
    found, _, _ = run(3000)
    assert found == []


def test_a_slow_creep_is_caught_with_the_numbers() -> None:
    found, _, _ = run(2500, creep(start=500, length=2000, final=4.0))
    assert found and {e.agent_id for _, e, _ in found} == {"a0"}
    i, e, first = found[0]
    growth = 1.0 + 3.0 * (i - 500) / 2000
    assert 1.3 < growth < 2.5  # caught when the cost is up by 30-150 %
    assert first.kind == "cost_drift" and first.score >= 1.0 == first.threshold
    assert "tokens per call have crept up to" in first.summary
    assert "while fleet support stayed flat" in first.summary
    assert first.observed > 1.2 * first.baseline
    assert first.evidence[0] == e.event_id and len(first.evidence) <= 5
    assert len([f for _, e, f in found if e.agent_id == "a0"]) > 500  # stays flagged


def test_the_reference_does_not_learn_while_flagged() -> None:
    detector = CostDrift()
    found, states, fleet = run(2500, creep(start=500, length=2000, final=4.0), detector=detector)
    assert found
    state = states["a0"]
    reference, g = state["d"][:3], state["d"][3]
    out = detector.update(call(0, 9999, 40_000), AgentBaseline("a0", "support"), state, fleet)
    assert out and out[0].evidence[0] == "a0-9999"
    assert state["d"][:3] == reference  # mean, spread and count untouched
    assert state["d"][3] > g  # while the statistic keeps moving


def test_a_fleet_wide_creep_or_price_change_is_not_an_agent_drift() -> None:
    everyone = run(2500, lambda agent, i: 1.0 + 2.0 * max(i - 500, 0) / 2000)
    assert everyone[0] == []
    assert everyone[2]["cost_drift"].epoch >= 1  # the fleet moved, agents restarted
    pricier = run(1500, model=lambda agent, i: "gpt-4o-mini" if i < 600 else "claude-sonnet-4")
    assert pricier[0] == []  # 20x the price, same tokens: the fleet's choice, no drift


def test_a_transient_spike_is_not_a_drift() -> None:
    spike = run(2000, lambda agent, i: 6.0 if agent == 0 and 800 <= i < 840 else 1.0)
    late = [i for i, _, _ in spike[0] if i >= 860]
    assert late == []


def test_state_is_json_and_small() -> None:
    _, states, _ = run(600)
    for state in states.values():
        text = json.dumps(state)
        assert len(text) < 512 and json.loads(text) == state


def test_params_round_trip() -> None:
    detector = CostDrift()
    assert type(detector)(**detector.params()).params() == detector.params()
    assert detector.clone().params() == detector.params()
    assert all(not key.startswith("_") for key in detector.params())
