from __future__ import annotations

import math
import random

import pytest

from agentwatch.detectors.rate_test import RateTest, binomial_tail_log10, poisson_tail_log10

stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize("mu", [0.01, 0.5, 1.0, 4.9, 5.1, 30.0, 250.0])
@pytest.mark.parametrize("k", [0, 1, 2, 3, 5, 8, 20, 60, 300])
def test_poisson_tail_matches_scipy(k: int, mu: float) -> None:
    expected = stats.poisson.logsf(k - 1, mu) / math.log(10.0)
    if math.isfinite(expected) and expected > -300:
        assert poisson_tail_log10(k, mu) == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("p", [1e-4, 0.01, 0.1, 0.5, 0.9])
@pytest.mark.parametrize(
    ("k", "n"), [(0, 5), (1, 1), (1, 10), (3, 10), (8, 10), (5, 200), (60, 200)]
)
def test_binomial_tail_matches_scipy(k: int, n: int, p: float) -> None:
    expected = stats.binom.logsf(k - 1, n, p) / math.log(10.0)
    if math.isfinite(expected) and expected > -300:
        assert binomial_tail_log10(k, n, p) == pytest.approx(expected, rel=1e-6, abs=1e-9)


def test_extreme_tails_stay_finite() -> None:
    assert poisson_tail_log10(2000, 1.0) < -4000
    assert math.isfinite(poisson_tail_log10(2000, 1.0))
    assert binomial_tail_log10(500, 500, 1e-3) == pytest.approx(-1500.0, rel=1e-3)
    assert binomial_tail_log10(12, 10, 0.5) == binomial_tail_log10(10, 10, 0.5)  # k > n
    assert binomial_tail_log10(3, 10, 0.0) < -30  # p clamped, not a math error


def test_poisson_mode_learns_the_rate_and_needs_evidence() -> None:
    test = RateTest(min_count=4, half_life=30)
    rng = random.Random(0)
    for _ in range(300):
        test.learn_one({"events": float(rng.choice([1, 2, 2, 3]))})
    assert test.expected(test._state) == pytest.approx(2.0, rel=0.15)
    assert test.score_one({"events": 3.0}) == 0.0  # below min_count
    assert 0.0 < test.score_one({"events": 4.0}) < 1.5
    assert test.score_one({"events": 20.0}) > 10.0


def test_binomial_mode_with_a_prior() -> None:
    test = RateTest(trials="calls", min_count=3, prior_rate=0.01, prior_weight=100)
    assert test.expected(test._state) == pytest.approx(0.01)
    quiet = test.score_one({"failures": 1.0, "calls": 10.0})
    storm = test.score_one({"failures": 7.0, "calls": 10.0})
    assert quiet == 0.0 and storm > 10.0
    for _ in range(50):
        test.learn_one({"failures": 5.0, "calls": 10.0})  # a flaky stream: half fail
    assert test.score_one({"failures": 7.0, "calls": 10.0}) < 1.5


def test_learn_zeros_equals_repeated_learning() -> None:
    test = RateTest(trials="n", half_life=100)
    a, b = [7.0, 2.0], [7.0, 2.0]
    for _ in range(37):
        test.learn_value(a, 0.0, 1.0)
    test.learn_zeros(b, 37)
    assert b == pytest.approx(a, rel=1e-12)
    test.learn_zeros(b, 0)
    assert b == pytest.approx(a, rel=1e-12)
