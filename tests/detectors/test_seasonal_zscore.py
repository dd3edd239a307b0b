from __future__ import annotations

import json
import math
import random

import pytest

from agentwatch.detectors.robust_zscore import RobustZScore
from agentwatch.detectors.seasonal_zscore import SeasonalRobustZScore

DAY = 86_400.0


def daily(days: int, rng: random.Random) -> list[dict[str, float]]:
    """Every 10 minutes: 100 at night, 400 at midday, noise 10."""
    out = []
    for i in range(days * 144):
        ts = 600.0 * i
        hour = (ts % DAY) / 3_600.0
        value = 250.0 - 150.0 * math.cos(2.0 * math.pi * hour / 24.0) + rng.gauss(0.0, 10.0)
        out.append({"ts": ts, "value": value})
    return out


def test_an_out_of_hours_value_scores_high_where_a_plain_zscore_shrugs() -> None:
    xs = daily(10, random.Random(3))
    seasonal, plain = SeasonalRobustZScore(), RobustZScore(feature="value", half_life=2000.0)
    for x in xs:
        seasonal.learn_one(x)
        plain.learn_one(x)
    night = {"ts": 10 * DAY + 3 * 3_600.0, "value": 380.0}  # a midday load at 3 a.m.
    assert seasonal.score_one(night) > 6.0
    assert plain.score_one(night) < 2.0
    noon = {"ts": 10 * DAY + 12 * 3_600.0, "value": 395.0}
    assert seasonal.score_one(noon) < 2.0


def test_direction_warm_up_and_a_lasting_shift() -> None:
    scorer = SeasonalRobustZScore(min_observations=30, direction="up")
    xs = daily(3, random.Random(4))
    assert scorer.score_one(xs[0]) == 0.0
    for x in xs:
        scorer.learn_one(x)
    last = xs[-1]["ts"]
    low = {"ts": last + 600.0, "value": -500.0}
    assert scorer.score_one(low) == 0.0  # "up" ignores drops
    high = {"ts": last + 600.0, "value": 2_000.0}
    first = scorer.score_one(high)
    for k in range(1, 1_500):  # the new level for ~10 days
        scorer.learn_one({"ts": last + 600.0 * k, "value": xs[k % len(xs)]["value"] + 600.0})
    assert scorer.score_one({"ts": last + 600.0 * 1_500, "value": 1_000.0}) < first / 3.0


def test_state_round_trips_through_json_and_bad_params_are_refused() -> None:
    scorer = SeasonalRobustZScore(slots=48)
    for x in daily(2, random.Random(5)):
        scorer.learn_one(x)
    state = json.loads(json.dumps(scorer.to_state()))
    restored = SeasonalRobustZScore.from_state(state, **scorer.params())
    probe = {"ts": 2 * DAY + 5_000.0, "value": 300.0}
    assert restored.score_one(probe) == scorer.score_one(probe)
    with pytest.raises(ValueError, match="slots"):
        SeasonalRobustZScore.from_state(state, slots=24)
    with pytest.raises(ValueError, match="slots must be"):
        SeasonalRobustZScore(slots=0)
    with pytest.raises(KeyError, match="no feature"):
        scorer.score_one({"ts": 1.0})
