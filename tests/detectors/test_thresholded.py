from __future__ import annotations

import random

from agentwatch.detectors.drift import DriftDetector
from agentwatch.detectors.rate_test import RateTest
from agentwatch.detectors.robust_zscore import RobustZScore
from agentwatch.detectors.thresholded import Thresholded


def test_a_burst_stays_visible_for_its_whole_length() -> None:
    rng = random.Random(0)
    plain, guarded = RobustZScore(half_life=20), Thresholded(RobustZScore(half_life=20), 4.0)
    for _ in range(300):
        x = {"x": rng.gauss(10.0, 1.0)}
        plain.learn_one(x)
        guarded.learn_one(x)
    burst = [{"x": 20.0}] * 100
    plain_scores, guarded_scores = [], []
    for x in burst:
        plain_scores.append(plain.score_one(x))
        guarded_scores.append(guarded.score_one(x))
        plain.learn_one(x)
        guarded.learn_one(x)
    assert plain_scores[-1] < 4.0  # the plain scorer learned the burst as normal
    assert min(guarded_scores) > 8.0  # the guarded one never did


def test_flagged_points_leave_the_state_alone_normal_ones_do_not() -> None:
    guard = Thresholded(RateTest(min_count=2), threshold=3.0)
    for count in [1.0, 2.0, 1.0, 0.0, 2.0, 1.0]:
        guard.learn_one({"n": count})
    before = guard.wrapped.to_state()
    assert guard.is_anomaly({"n": 15.0})
    guard.learn_one({"n": 15.0})
    assert guard.wrapped.to_state() == before
    guard.learn_one({"n": 1.0})
    assert guard.wrapped.to_state() != before


def test_patience_accepts_a_lasting_new_level() -> None:
    guard = Thresholded(RobustZScore(min_observations=5, half_life=5), 4.0, patience=10)
    for i in range(50):
        guard.learn_one({"x": 10.0 + (i % 3) * 0.1})
    flagged = 0
    for _ in range(200):
        flagged += guard.is_anomaly({"x": 50.0})
        guard.learn_one({"x": 50.0})
    assert 10 <= flagged < 60
    assert not guard.is_anomaly({"x": 50.0})


def test_wraps_any_scorer_including_river_models() -> None:
    from river import anomaly

    rng = random.Random(1)
    guard = Thresholded(anomaly.HalfSpaceTrees(seed=1, limits={"x": (0.0, 1.0)}), 0.9)
    for _ in range(600):
        guard.learn_one({"x": rng.uniform(0.4, 0.6)})
    assert guard.score_one({"x": 0.97}) > guard.score_one({"x": 0.5})
    assert guard.to_state() == {"scorer": None, "run": 0}


def test_default_scorer_clone_and_state_round_trip() -> None:
    guard = Thresholded()
    assert isinstance(guard.wrapped, RobustZScore) and guard.scorer is None
    inner = DriftDetector(threshold=10.0)
    wrapped = Thresholded(inner, 1.0)
    for i in range(100):
        wrapped.learn_one({"v": float(i % 5)})
    clone = wrapped.clone()
    assert clone.scorer is not inner and clone.params()["threshold"] == 1.0
    assert clone.wrapped.to_state()["n"] == 0
    restored = Thresholded.from_state(wrapped.to_state(), **wrapped.params())
    assert restored.wrapped.to_state() == inner.to_state()
