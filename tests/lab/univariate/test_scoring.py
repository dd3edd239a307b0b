from __future__ import annotations

import math

import pytest

from agentwatch.lab.univariate.corpus import Series
from agentwatch.lab.univariate.scoring import (
    probation_length,
    scaled_sigmoid,
    score_series,
    summarize,
)

N = 1000  # probation: the first 150 points


def series(windows: list[tuple[int, int]], name: str = "synthetic/spike.csv") -> Series:
    times = tuple(60.0 * i for i in range(N))
    return Series(
        name, times, tuple(0.0 for _ in range(N)), tuple((times[a], times[b]) for a, b in windows)
    )


def alarms_at(*indexes: int) -> list[bool]:
    flags = [False] * N
    for i in indexes:
        flags[i] = True
    return flags


def test_scaled_sigmoid_and_probation_are_nabs() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0
    assert probation_length(4032) == 604
    assert probation_length(100_000) == 750


def test_an_alarm_at_a_windows_first_point_earns_the_full_reward() -> None:
    result = score_series(series([(400, 499)]), alarms_at(400))
    assert result.detected == 1 and result.false_alarms == 0
    assert result.raw == pytest.approx(1.0)
    assert result.nab == pytest.approx(100.0)
    assert result.delays_points == (0,) and result.delays_s == (0.0,)
    assert result.lags_points == (-49,)


def test_only_the_first_alarm_of_a_window_counts_and_later_is_worth_less() -> None:
    early = score_series(series([(400, 499)]), alarms_at(410, 450, 499))
    late = score_series(series([(400, 499)]), alarms_at(490))
    assert early.delays_points == (10,) and early.false_alarms == 0
    assert 0.0 < late.raw < early.raw < 1.0
    assert late.raw == pytest.approx(scaled_sigmoid(-10 / 100) / scaled_sigmoid(-1.0))


def test_a_missed_window_costs_one_and_nothing_scores_zero() -> None:
    result = score_series(series([(400, 499), (700, 799)]), alarms_at(400))
    assert result.detected == 1 and result.windows == 2 and result.recall == 0.5
    assert result.raw == pytest.approx(0.0)  # +1 for the first, -1 for the second
    silent = score_series(series([(400, 499)]), [False] * N)
    assert silent.raw == -1.0 and silent.nab == 0.0


def test_false_alarms_cost_up_to_011_and_probation_is_free() -> None:
    result = score_series(series([(400, 499)]), alarms_at(10, 200, 500, 900))
    # 10: probation, ignored; 200: before any window, -0.11; 500: just after, ~0;
    # 900: 401 points past a 100-point window (x = 4.05 > 3), -0.11; window missed, -1
    just_after = 0.11 * scaled_sigmoid(1 / 99)
    assert result.false_alarms == 3 and result.alarms == 3
    assert result.raw == pytest.approx(-1.0 - 0.11 + just_after - 0.11)
    assert result.raw < 0.0 and result.nab is not None and result.nab < 0.0
    assert result.false_per_1000 == pytest.approx(1000.0 * 3 / (N - 150))
    assert result.precision == 0.0


def test_windows_are_located_by_time_and_pooled_scores_are_normalised_sums() -> None:
    shifted = series([(400, 499)])
    between = Series(
        shifted.name,
        shifted.timestamps,
        shifted.values,
        ((shifted.timestamps[400] - 30.0, shifted.timestamps[499] + 30.0),),
    )
    one = score_series(between, alarms_at(400))
    assert one.windows == 1 and one.raw == pytest.approx(1.0)
    two = score_series(series([(300, 399)]), [False] * N)
    pooled = summarize([one, two])
    assert pooled.windows == 2 and pooled.detected == 1
    assert pooled.nab == pytest.approx(50.0)
    assert pooled.median_delay_points == 0.0
    with pytest.raises(ValueError, match="alarms for"):
        score_series(shifted, [False] * 3)
    assert not math.isnan(pooled.false_per_day)
