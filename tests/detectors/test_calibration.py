"""BudgetThreshold: the false alarms it lets through match the budget it was given."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable

import pytest

from agentwatch.detectors.calibration import BudgetThreshold, compact_state

DAY = 86_400.0


def false_alarms_per_day(
    draw: Callable[[random.Random], float], budget: float, *, per_day: int, days: int, seed: int
) -> float:
    """Run a stream of benign scores; count alarms after a one-day warm-up."""
    rng = random.Random(seed)
    guard = BudgetThreshold(budget_per_day=budget, floor=0.0)
    step = DAY / per_day
    alarms = 0
    for i in range(per_day * (days + 1)):
        score = draw(rng)
        if i >= per_day and guard.is_anomaly(score):
            alarms += 1
            continue  # a flagged score is never learned
        guard.learn_one(score, ts=i * step)
    return alarms / days


@pytest.mark.parametrize(
    ("name", "draw"),
    [
        ("exponential", lambda r: r.expovariate(1.0)),
        ("half-normal", lambda r: abs(r.gauss(0.0, 1.0))),
        ("gamma", lambda r: r.gammavariate(2.0, 1.0)),
    ],
)
def test_alarm_rate_is_within_a_small_factor_of_the_budget(name: str, draw: object) -> None:
    budget = 1.0  # alarms per day: large enough to count over 30 days
    rate = false_alarms_per_day(draw, budget, per_day=1440, days=30, seed=3)  # type: ignore[arg-type]
    # light tails: the exponential model over-estimates them, so at most the budget (x2 slack)
    assert rate <= 2.0 * budget, (name, rate)


def test_same_budget_same_alarms_whatever_the_score_scale() -> None:
    """Calibration, not a constant: scores 100x larger give the same alarm count."""
    small = false_alarms_per_day(lambda r: r.expovariate(1.0), 1.0, per_day=500, days=20, seed=5)
    large = false_alarms_per_day(
        lambda r: 100 * r.expovariate(1.0), 1.0, per_day=500, days=20, seed=5
    )
    assert small == large


def test_a_busier_stream_gets_a_higher_threshold_for_the_same_budget() -> None:
    quiet, busy = BudgetThreshold(0.1), BudgetThreshold(0.1)
    rng = random.Random(0)
    for i in range(3000):
        s = rng.expovariate(1.0)
        quiet.learn_one(s, ts=i * 600.0)  # 144 checks a day
        busy.learn_one(s, ts=i * 6.0)  # 14,400 checks a day
    assert busy.threshold() > quiet.threshold() + math.log(50)


def test_cold_stream_is_conservative_and_young_agent_borrows_its_fleet_tail() -> None:
    cold = BudgetThreshold(0.05)
    assert cold.threshold() > 3.0  # the prior alone: no alarm on the first mild score
    fleet = BudgetThreshold(0.05)
    rng = random.Random(1)
    for i in range(20_000):
        fleet.learn_one(10 * rng.expovariate(1.0), ts=i * 3.0)  # a fleet with a wide tail
    young = BudgetThreshold(0.05)
    for i in range(5):
        young.learn_one(0.1, ts=i * 60.0)
    assert young.shrunk(fleet).threshold() > 5 * young.threshold()


def test_merge_adds_evidence_and_state_round_trips() -> None:
    a, b = BudgetThreshold(0.2), BudgetThreshold(0.2)
    for i in range(100):
        a.learn_one(float(i % 7), ts=float(i))
        b.learn_one(float(i % 3), ts=1000.0 + i)
    both = a.merged(b)
    assert both.seen == 200 and both.first_ts == 0.0 and both.last_ts == 1099.0
    assert both.over == pytest.approx(a.over + b.over)
    restored = BudgetThreshold(0.2).load_state(both.to_state())
    assert restored.to_state() == both.to_state()
    assert restored.threshold() == both.threshold()


def test_state_kernels_give_the_objects_results() -> None:
    """One instance for the parameters and a JSON list per stream: same thresholds."""
    rng = random.Random(4)
    guard = BudgetThreshold(0.05, floor=0.5, prior_excess=0.3)
    fleet = BudgetThreshold(0.05, floor=0.5, prior_excess=0.3)
    state, fleet_state = BudgetThreshold.new_state(), BudgetThreshold.new_state()
    for i in range(3000):
        score = rng.expovariate(2.0)
        fleet.learn_one(score * 1.5, ts=i * 7.0)
        guard.learn_state(fleet_state, score * 1.5, ts=i * 7.0)
        if i % 10 == 0:
            guard.learn_one(score, ts=i * 70.0)
            guard.learn_state(state, score, ts=i * 70.0)
    assert state == pytest.approx(guard.to_state())
    assert guard.state_threshold(state) == pytest.approx(guard.threshold())
    shrunk = guard.shrunk(fleet).threshold()
    assert guard.state_threshold(state, fleet_state) == pytest.approx(shrunk)


def test_a_fleet_weighs_no_more_than_it_has_seen() -> None:
    """A fleet with one tiny score must not count as 200 checks of tiny scores."""
    fleet = BudgetThreshold(0.05)
    fleet.learn_one(0.001, ts=0.0)
    young = BudgetThreshold(0.05)
    young.learn_one(0.5, ts=0.0)
    assert young.shrunk(fleet).threshold() > 0.5 * young.threshold()
    assert young.shrunk(fleet).checks == pytest.approx(young.checks + fleet.checks)


def test_compact_state_rounds_and_round_trips() -> None:
    rng = random.Random(2)
    guard = BudgetThreshold(budget_per_day=0.05, floor=1.0)
    for i in range(4000):
        guard.learn_one(rng.expovariate(1.0) * 3.0, ts=1_767_000_000.987654 + 13.7 * i)
    state = compact_state(guard)
    assert all(v is None or round(v, 3) == v for v in state)
    assert state[4] == pytest.approx(1_767_000_001.0) and len(json.dumps(state)) < 90
    restored = BudgetThreshold(budget_per_day=0.05, floor=1.0).load_state(state)
    assert restored.threshold() == pytest.approx(guard.threshold(), abs=1e-3)
    assert compact_state(BudgetThreshold())[4:] == [None, None]
