from __future__ import annotations

import json
import math
import random

import pytest

from agentwatch.detectors.drift import DriftDetector


def t_noise(rng: random.Random, scale: float) -> float:
    chi2 = sum(rng.gauss(0.0, 1.0) ** 2 for _ in range(3))
    return scale * rng.gauss(0.0, 1.0) / math.sqrt(chi2 / 3.0)


def test_silent_on_long_stationary_heavy_tailed_noise() -> None:
    rng = random.Random(0)
    ph = DriftDetector()
    worst = 0.0
    for _ in range(30_000):
        x = {"v": 5.0 + t_noise(rng, 0.5) + (3.0 if rng.random() < 0.01 else 0.0)}
        worst = max(worst, ph.score_one(x))
        ph.learn_one(x)
    assert worst < 0.7


def test_detects_a_slow_creep_and_says_how_far() -> None:
    rng = random.Random(1)
    ph = DriftDetector()
    for _ in range(1000):
        ph.learn_one({"v": rng.gauss(0.0, 1.0)})
    for i in range(5000):
        x = {"v": rng.gauss(i / 1000.0, 1.0)}  # +1 sd per 1,000 observations
        if ph.score_one(x) >= 1.0:
            break
        ph.learn_one(x)
    assert 600 < i < 2500
    assert ph.to_state()["g_up"] > 0.8 * ph.threshold


def test_direction_down_and_both() -> None:
    rng = random.Random(2)
    down, both, up = (DriftDetector(direction=d) for d in ("down", "both", "up"))
    for i in range(3000):
        x = {"v": rng.gauss(0.0 if i < 1000 else -2.0, 1.0)}
        for ph in (down, both, up):
            ph.learn_one(x)
    assert down.score(down._state) >= 1.0
    assert both.score(both._state) >= 1.0
    assert up.score(up._state) == 0.0


def test_advance_then_learn_reference_equals_learn_value() -> None:
    rng = random.Random(3)
    a, b = DriftDetector(), DriftDetector()
    sa, sb = a.new_state(), b.new_state()
    for i in range(2000):
        v = rng.gauss(0.01 * max(i - 1000, 0), 1.0)
        a.learn_value(sa, v)
        b.advance(sb, v)
        b.learn_reference(sb, v)
    assert sa == sb


def test_frozen_reference_keeps_the_statistic_growing() -> None:
    ph = DriftDetector(min_observations=10)
    state = ph.new_state()
    for i in range(50):
        ph.learn_value(state, float(i % 2))
    reference, g = state[:3], state[3]
    for _ in range(30):
        ph.advance(state, 5.0)  # flagged: the statistic moves, the reference does not
    assert state[:3] == reference
    assert state[3] == pytest.approx(g + 30 * (ph.clip - ph.delta))


def test_reset_on_drift_and_state_round_trip() -> None:
    ph = DriftDetector(reset_on_drift=True, min_observations=10, threshold=5.0)
    for i in range(40):
        ph.learn_one({"v": float(i % 3)})
    for _ in range(10):
        ph.learn_one({"v": 100.0})
    assert ph.to_state()["n"] < 10  # restarted on the new regime
    restored = DriftDetector.from_state(json.loads(json.dumps(ph.to_state())), **ph.params())
    assert restored.to_state() == ph.to_state()
