"""The scorers compared on a corpus, and the false-alarm budget that turns scores into alarms.

Every candidate is streamed prequentially (score a point, then learn it) and learns every
point; its scores become alarms through the project's
:class:`~agentwatch.detectors.calibration.BudgetThreshold` (a threshold placed where the
modelled tail of the scores it did not flag predicts ``budget_per_day`` false alarms a day,
learned on the series' own scores, no per-series tuning) and a cooldown (one alarm per
``cooldown_s``, as rules have). Scores bounded in ``[0, 1]`` are mapped to a surprise scale
``-ln(1 - s)`` first, so their upper tail is roughly exponential, the shape the budget
models; unbounded z-like scores keep their scale with a floor of 2 (nothing under two
spreads is ever an alarm).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agentwatch.detectors.calibration import BudgetThreshold
from agentwatch.lab.univariate.corpus import Series

__all__ = [
    "CANDIDATES",
    "COOLDOWN_S",
    "Candidate",
    "PointScorer",
    "alarms_from_scores",
    "scores_of",
]

COOLDOWN_S = 3_600.0  # one alarm per series per hour at most (fixed before any run)
_Z_FLOOR = 2.0
_SURPRISE_CAP = 1e-12


class PointScorer(Protocol):
    """One series' scorer: ``score`` a point before it ``learn``s it."""

    def score(self, ts: float, value: float) -> float: ...

    def learn(self, ts: float, value: float) -> None: ...


@dataclass(frozen=True)
class Candidate:
    """A scorer to compare: how to build one per series, and the scale of its scores."""

    name: str
    description: str
    make: Callable[[Series], PointScorer]
    bounded: bool  # scores in [0, 1]: mapped to -ln(1 - s)

    @property
    def floor(self) -> float:
        return 0.0 if self.bounded else _Z_FLOOR


class _FeatureScorer:
    """A river-style ``learn_one(x)`` / ``score_one(x)`` scorer on ``{"value": v}``
    (plus ``{"ts": t}`` when it reads time)."""

    def __init__(self, scorer: Any, with_time: bool = False) -> None:
        self._scorer = scorer
        self._with_time = with_time

    def _x(self, ts: float, value: float) -> dict[str, float]:
        return {"ts": ts, "value": value} if self._with_time else {"value": value}

    def score(self, ts: float, value: float) -> float:
        return float(self._scorer.score_one(self._x(ts, value)))

    def learn(self, ts: float, value: float) -> None:
        self._scorer.learn_one(self._x(ts, value))


class _TargetScorer:
    """river's supervised-style detectors: ``score_one(None, y)`` / ``learn_one(None, y)``.

    A forecaster that has not seen enough points to forecast (river's Holt-Winters before its
    first seasons) raises ``IndexError``; that point scores 0.
    """

    def __init__(self, scorer: Any) -> None:
        self._scorer = scorer

    def score(self, ts: float, value: float) -> float:
        try:
            return float(self._scorer.score_one(None, value))
        except IndexError:
            return 0.0

    def learn(self, ts: float, value: float) -> None:
        self._scorer.learn_one(None, value)


def _robust_zscore(series: Series) -> PointScorer:
    from agentwatch.detectors.robust_zscore import RobustZScore

    return _FeatureScorer(RobustZScore())


def _seasonal(series: Series) -> PointScorer:
    from agentwatch.detectors.seasonal_zscore import SeasonalRobustZScore

    return _FeatureScorer(SeasonalRobustZScore(feature="value"), with_time=True)


def _hst(series: Series) -> PointScorer:
    from agentwatch.detectors.half_space_trees import HalfSpaceTreesScorer

    return _FeatureScorer(HalfSpaceTreesScorer())


def _river_hst(series: Series) -> PointScorer:
    from river import anomaly, compose, preprocessing

    return _FeatureScorer(
        compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=42))
    )


def _river_gaussian(series: Series) -> PointScorer:
    from river import anomaly

    return _TargetScorer(anomaly.GaussianScorer(grace_period=100))  # type: ignore[no-untyped-call]


def _river_sad(series: Series) -> PointScorer:
    from river import anomaly

    return _TargetScorer(anomaly.StandardAbsoluteDeviation())


def _river_holt_winters(series: Series) -> PointScorer:
    from river import anomaly, time_series

    steps = [b - a for a, b in zip(series.timestamps, series.timestamps[1:], strict=False)]
    season = max(2, round(86_400.0 / statistics.median(steps))) if steps else 2
    model = time_series.HoltWinters(  # type: ignore[no-untyped-call]
        alpha=0.3, beta=0.1, gamma=0.6, seasonality=season
    )
    return _TargetScorer(
        anomaly.PredictiveAnomalyDetection(model, horizon=1, n_std=3.0, warmup_period=2 * season)
    )


CANDIDATES: dict[str, Candidate] = {
    c.name: c
    for c in (
        Candidate(
            "robust_zscore",
            "agentwatch RobustZScore, defaults (EW centre and MAD, half-life 100 points)",
            _robust_zscore,
            bounded=False,
        ),
        Candidate(
            "seasonal_robust_zscore",
            "agentwatch SeasonalRobustZScore, defaults (level + 24 hourly offsets of the day)",
            _seasonal,
            bounded=False,
        ),
        Candidate(
            "half_space_trees",
            "agentwatch HalfSpaceTreesScorer, defaults (median/IQR scaling, 25 trees)",
            _hst,
            bounded=True,
        ),
        Candidate(
            "river_hst",
            "river MinMaxScaler | HalfSpaceTrees(seed=42)",
            _river_hst,
            bounded=True,
        ),
        Candidate(
            "river_gaussian",
            "river GaussianScorer(grace_period=100): two-sided Gaussian tail of all history",
            _river_gaussian,
            bounded=True,
        ),
        Candidate(
            "river_sad",
            "river StandardAbsoluteDeviation: |y - mean| / std of all history",
            _river_sad,
            bounded=False,
        ),
        Candidate(
            "river_holt_winters",
            "river PredictiveAnomalyDetection(HoltWinters(0.3, 0.1, 0.6, a day of points))",
            _river_holt_winters,
            bounded=True,
        ),
    )
}


def scores_of(candidate: Candidate, series: Series) -> list[float]:
    """The candidate's prequential scores on ``series``, on the alarm scale."""
    scorer = candidate.make(series)
    out: list[float] = []
    for ts, value in zip(series.timestamps, series.values, strict=True):
        score = scorer.score(ts, value)
        scorer.learn(ts, value)
        if not math.isfinite(score):
            score = 0.0
        if candidate.bounded:
            score = -math.log(max(1.0 - min(max(score, 0.0), 1.0), _SURPRISE_CAP))
        out.append(score)
    return out


def alarms_from_scores(
    timestamps: Sequence[float],
    scores: Sequence[float],
    *,
    budget_per_day: float,
    floor: float,
    cooldown_s: float = COOLDOWN_S,
) -> list[bool]:
    """Alarms: a score at or over the budget's threshold, at most one per ``cooldown_s``.

    The threshold learns only the scores it did not flag (an anomaly never raises it), and
    none of the exact zeros a scorer returns before its first non-zero score (its warm-up):
    a long warm-up would otherwise teach it a tail of nothing.
    """
    guard = BudgetThreshold(budget_per_day=budget_per_day, floor=floor)
    quiet_until = -math.inf
    warmed = False
    alarms: list[bool] = []
    for ts, score in zip(timestamps, scores, strict=True):
        if not warmed:  # a scorer's warm-up zeros say nothing about its tail
            warmed = score != 0.0
            if not warmed:
                alarms.append(False)
                continue
        if guard.is_anomaly(score):
            alarms.append(ts >= quiet_until)
            if ts >= quiet_until:
                quiet_until = ts + cooldown_s
        else:
            alarms.append(False)
            guard.learn_one(score, ts)
    return alarms
