"""CostDrift: a ramp of one agent's calls over half an hour to hours, unlike its fleet's."""

from __future__ import annotations

import copy
import json

from agentwatch.detectors.base import DETECTORS
from agentwatch.detectors.cost_drift import CostDrift
from tests.detectors.cost_helpers import Fleet, Replay

PERIOD = 30.0  # one call per agent every 30 s


def warmed(detector: CostDrift | None = None, steps: int = 400) -> tuple[Replay, Fleet]:
    replay = Replay(detector or CostDrift())
    agents = Fleet(agents=8, period=PERIOD, seed=3)
    for step in range(steps):
        agents.tick(replay, step)
    assert replay.found == [], "a normal warm-up raised nothing"
    return replay, agents


def ramp(step: int, start: int, calls: int, final: float) -> float:
    """A linear ramp from 1x at ``start`` to ``final`` after ``calls`` calls, then held."""
    return 1.0 + (final - 1.0) * min(max(step - start, 0) / calls, 1.0)


def test_registered() -> None:
    assert DETECTORS["cost_drift"] is CostDrift


def test_silent_on_stationary_traffic() -> None:
    replay, _ = warmed(steps=1500)  # 12.5 hours of 8 agents
    assert replay.found == []


def test_a_ramp_is_flagged_within_30_minutes_of_doubling_with_the_numbers() -> None:
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    # prompts grow 5x over 90 minutes (180 calls); the output stays, so the cost per call,
    # 2500 x f + 4 x 300 in input-token units, doubles where 2500 x f = 6200: near call 450
    doubled = next(s for s in range(400, 700) if 2500 * ramp(s, 400, 180, 5.0) >= 6200)
    flagged = None
    for step in range(400, 700):
        fleet.tick(replay, step, factor={a0: ramp(step, 400, 180, 5.0)})
        if replay.found:
            flagged = step
            break
    assert replay.agents() == {a0} and flagged is not None
    assert (flagged - doubled) * PERIOD <= 1800, (flagged, doubled)  # 30 min after 2x at most
    assert 2500 * ramp(flagged, 400, 180, 5.0) + 1200 >= 1.5 * 3700  # not on noise
    event, finding = replay.found[0]
    assert (step - doubled) * PERIOD <= 1800, (step, doubled)
    assert finding.kind == "cost_drift" and finding.score >= finding.threshold > 0.0
    assert finding.observed > 1.5 * finding.baseline
    assert "long-run level" in finding.summary and "fleet support did not" in finding.summary
    assert finding.evidence[0] == event.event_id


def test_a_fleet_wide_prompt_change_is_not_a_drift() -> None:
    replay, fleet = warmed()
    for step in range(400, 1000):  # every agent's prompt doubles within two minutes
        fleet.tick(
            replay, step, factor={a: 2.0 for k, a in enumerate(fleet.ids()) if step > 400 + k}
        )
    assert replay.found == []


def test_a_model_upgrade_is_not_a_drift() -> None:
    """Prices are the fleet's decision: a lone agent's new model is the spike's business."""
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    for step in range(400, 700):
        fleet.tick(replay, step, models={a0: "claude-opus-4"})
    assert replay.found == []


def test_the_baseline_does_not_learn_while_flagged() -> None:
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    for step in range(400, 700):
        fleet.tick(replay, step, factor={a0: ramp(step, 400, 60, 4.0)})
        if replay.found:
            break
    state = replay.states[a0]
    before = copy.deepcopy((state["v"][:4], state["t"]))
    fleet.tick(replay, step + 1, factor={a0: 4.0}, only={a0})
    assert replay.found[-1][0].event_id.endswith(f"-{fleet.calls[a0] - 1}")  # flagged again
    assert before == (state["v"][:4], state["t"])


def test_state_is_json_and_small() -> None:
    replay, _ = warmed()
    for state in replay.states.values():
        text = json.dumps(state)
        assert len(text) < 600, len(text)
        assert json.loads(text) == state
        assert "m" not in state  # models are not watched


def test_params_round_trip() -> None:
    detector = CostDrift(memory_s=3600.0)
    assert type(detector)(**detector.params()).params() == detector.params()
    assert detector.clone().params() == detector.params()
    assert "model_share" not in detector.params()
