from __future__ import annotations

import json
import math
import random

import pytest

from agentwatch.detectors.robust_zscore import RobustZScore


def trained(values: list[float], **params: object) -> RobustZScore:
    scorer = RobustZScore(**params)  # type: ignore[arg-type]
    for value in values:
        scorer.learn_one({"x": value})
    return scorer


def test_zero_during_warm_up_then_a_robust_z() -> None:
    scorer = RobustZScore(min_observations=10)
    for i in range(9):
        scorer.learn_one({"x": 10.0 + (i % 3)})
        assert scorer.score_one({"x": 1000.0}) == 0.0
    scorer.learn_one({"x": 11.0})
    assert scorer.score_one({"x": 1000.0}) > 100.0


def test_score_is_distance_over_spread_on_gaussian_data() -> None:
    rng = random.Random(0)
    scorer = trained([rng.gauss(100.0, 10.0) for _ in range(5000)], half_life=2000)
    _n, centre, _dev = scorer.to_state().values()
    assert centre == pytest.approx(100.0, abs=1.5)
    assert scorer.spread(scorer._state) == pytest.approx(10.0, rel=0.1)
    assert scorer.score_one({"x": 150.0}) == pytest.approx(5.0, rel=0.12)


def test_outliers_are_winsorized_when_learning() -> None:
    rng = random.Random(1)
    clean = trained([rng.gauss(0.0, 1.0) for _ in range(500)])
    dirty = trained([1e6 if i % 20 == 5 and i > 40 else rng.gauss(0.0, 1.0) for i in range(500)])
    # after the warm-up, a 5 % contamination by absurd values barely moves the centre or
    # the spread (the warm-up itself uses plain means: see the class notes)
    assert abs(dirty.to_state()["centre"]) < 1.0
    assert dirty.spread(dirty._state) < 3.0 * clean.spread(clean._state)
    assert dirty.score_one({"x": 8.0}) > 3.0


def test_flat_series_do_not_explode() -> None:
    scorer = trained([2.5] * 100)
    assert scorer.score_one({"x": 2.5}) == 0.0
    # 1 % relative floor: a 0.1 % change is a tenth of a spread, not infinity
    assert scorer.score_one({"x": 2.5025}) == pytest.approx(0.1)


def test_log_offset_for_heavy_tails_and_direction() -> None:
    rng = random.Random(2)
    latencies = [200.0 * math.exp(rng.gauss(0.0, 0.5)) for _ in range(2000)]
    log_scorer = trained(latencies, log_offset=1.0, direction="up")
    assert log_scorer.score_one({"x": 200.0}) < 0.5
    assert log_scorer.score_one({"x": 4000.0}) > 4.0  # 20 x the median
    assert log_scorer.score_one({"x": 5.0}) == 0.0  # "up" ignores drops
    down = trained(latencies, log_offset=1.0, direction="down")
    assert down.score_one({"x": 5.0}) > 4.0


def test_feature_selection_and_state_round_trip() -> None:
    scorer = RobustZScore(feature="b", min_observations=3)
    for i in range(20):
        scorer.learn_one({"a": 1e9, "b": float(i % 4)})
    assert scorer.score_one({"a": 0.0, "b": 1.5}) < 1.0
    state = json.loads(json.dumps(scorer.to_state()))
    restored = RobustZScore.from_state(state, **scorer.params())
    assert restored.score_one({"b": 30.0}) == scorer.score_one({"b": 30.0}) > 5.0


def test_step_change_is_flagged_then_learned() -> None:
    rng = random.Random(3)
    scorer = trained([rng.gauss(10.0, 1.0) for _ in range(500)], half_life=50)
    assert scorer.score_one({"x": 20.0}) > 6.0
    for _ in range(600):
        scorer.learn_one({"x": rng.gauss(20.0, 1.0)})
    assert scorer.score_one({"x": 20.0}) < 1.0
