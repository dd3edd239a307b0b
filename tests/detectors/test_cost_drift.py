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


def test_a_prompt_change_that_grows_a_busy_agent_more_than_its_sparse_fleet_is_no_drift() -> None:
    """A new prompt twice as long for everyone and 3.5 times for one busy agent (its longer
    sessions), whose five peers call once every ten minutes: 1.75x its fleet's change, under
    the 3x a ramp must reach. Growth beyond ``benign_factor`` used to fire on its own, before
    any peer had called since (sealed world u01: 2.7x, four minutes after a prompt change)."""
    replay = Replay(CostDrift())
    fleet = Fleet(agents=6, period=PERIOD, seed=3)
    ids = fleet.ids()

    def calling(step: int) -> set[str]:  # a0 every 30 s, each peer every 10 minutes
        return {ids[0]} | {a for k, a in enumerate(ids) if k and step % 20 == k}

    for step in range(3000):
        fleet.tick(replay, step, only=calling(step))
    assert replay.found == []
    for step in range(3000, 3600):
        factor = {a: 2.0 for a in ids} | {ids[0]: 3.5}
        fleet.tick(replay, step, factor=factor, only=calling(step))
    assert replay.found == []


def test_an_excursion_held_for_its_verdict_is_dropped_after_settle_s_not_fired_hours_late() -> None:
    """A busy agent of a sparse fleet jumps 4x for ten calls (its peers, calling every ten
    minutes, cannot tell yet), then is idle for two hours. Its next call used to fire on
    the old excursion, with the peers seen since as the verdict (sealed world u01: a cost
    explosion at 13:06, a drift warning at 15:10)."""
    replay = Replay(CostDrift())
    fleet = Fleet(agents=6, period=PERIOD, seed=3)
    ids = fleet.ids()

    def calling(step: int, a0: bool = True) -> set[str]:
        return ({ids[0]} if a0 else set()) | {a for k, a in enumerate(ids) if k and step % 20 == k}

    for step in range(3006):
        fleet.tick(replay, step, only=calling(step))
    for step in range(3006, 3016):  # while no peer calls (they call at steps 1-5 of 20)
        fleet.tick(replay, step, factor={ids[0]: 4.0}, only=calling(step))
    state = replay.states[ids[0]]
    assert state["h"][0] == state["v"][12 + 2], "the excursion is held for its verdict"
    assert replay.found == []
    for step in range(3016, 3256):  # two hours without a0
        fleet.tick(replay, step, only=calling(step, a0=False))
    for step in range(3256, 3266):
        fleet.tick(replay, step, only=calling(step))
    assert replay.found == []


def test_a_lone_ramp_soon_after_a_fleet_wide_change_is_flagged_once_it_settles() -> None:
    replay, fleet = warmed()
    a0 = fleet.ids()[0]
    settle = int(CostDrift().settle_s / PERIOD)
    # every prompt doubles at call 400; ten minutes later a0's own prompt ramps 5x in 90 min
    doubled = next(s for s in range(420, 900) if 2500 * ramp(s, 420, 180, 5.0) >= 6200)
    flagged = None
    for step in range(400, 1200):
        factor = {a: 2.0 for k, a in enumerate(fleet.ids()) if step > 400 + k}
        factor[a0] = 2.0 * ramp(step, 420, 180, 5.0)
        fleet.tick(replay, step, factor=factor)
        if replay.found:
            flagged = step
            break
    assert replay.agents() == {a0} and flagged is not None
    # not before the settling ends, and at most 30 minutes after that and after doubling
    assert 400 + settle <= flagged <= max(400 + settle, doubled) + 1800 / PERIOD, flagged


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
