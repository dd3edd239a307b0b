"""``RobustZScore``: a streaming robust z-score (EW centre, EW absolute deviation, winsorized)."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from agentwatch.detectors.base import FeatureScorer, register_scorer

__all__ = ["RobustZScore"]

_MAD_TO_SIGMA = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation (normal)


@register_scorer("robust_zscore")
class RobustZScore(FeatureScorer):
    """Robust z-score of one numeric feature against its own exponentially weighted history.

    The centre is an exponentially weighted mean and the spread an exponentially weighted
    mean absolute deviation scaled by 1.2533 (so it estimates a standard deviation for normal
    data). Once warmed up, each observation's residual is *winsorized* at ``clip`` spreads
    before it is folded in (a Huber-style M-estimate), so a heavy tail or a burst of outliers
    moves neither the centre nor the spread much. ``score_one`` is
    ``|x - centre| / spread`` (or one side of it, see ``direction``); it is 0 during warm-up.

    Parameters
    ----------
    feature
        Key of ``x`` to score; ``None`` (default) takes the first value of ``x``.
    half_life
        Half-life of the EW statistics, in observations (default 100).
    min_observations
        Warm-up: observations folded in before any non-zero score (default 20). During the
        warm-up the centre and deviation are plain running means.
    clip
        Residuals are winsorized at ``clip`` spreads when learning (default 4.0).
    relative_floor
        Lower bound of the spread as a fraction of ``|centre|`` (default 0.01): a flat series
        (a constant price) cannot make every tiny change look infinite.
    spread_floor
        Absolute lower bound of the spread (default 1e-9).
    log_offset
        ``None`` (default) scores raw values; a number ``c`` scores ``log(max(x, 0) + c)``,
        the right scale for positive heavy-tailed quantities (latency, cost, token counts).
    direction
        ``"both"`` (default) scores deviations either way, ``"up"`` only increases,
        ``"down"`` only decreases.

    Notes
    -----
    Catches point anomalies and short bursts (spikes, sudden level changes) in one stream.
    Limits: the EW centre follows slow trends and seasonality whose period is long relative
    to ``half_life`` (that is a feature for daily cycles, but a slow creep is invisible: use
    :class:`~agentwatch.detectors.drift.DriftDetector`); after a lasting step change the
    score decays back as the centre adapts (a few ``half_life``, slower with ``clip``), and
    if it is wrapped in :class:`~agentwatch.detectors.thresholded.Thresholded` it never
    adapts on its own. Strongly multimodal series (a mixture of two price levels) get a
    wide spread and so a low sensitivity. Residuals are assumed roughly symmetric; for
    lognormal data use ``log_offset``. The warm-up uses plain running means, so a gross
    outlier among the first ``min_observations`` values sets a wide spread that takes a
    few ``half_life`` to shrink.

    The per-stream state is three floats. A detector that keeps one scorer per agent uses one
    instance for its parameters and the low-level ``new_state`` / ``score_value`` /
    ``learn_value`` on a JSON-able list per agent (no objects allocated per event).

    Examples
    --------
    >>> scorer = RobustZScore(min_observations=5)
    >>> for value in [10.0, 11.0, 9.0, 10.5, 9.5, 10.0, 10.2]:
    ...     scorer.learn_one({"latency": value})
    >>> scorer.score_one({"latency": 10.1}) < 1.0
    True
    >>> round(scorer.score_one({"latency": 20.0}), 1)
    14.6
    >>> restored = RobustZScore.from_state(scorer.to_state(), min_observations=5)
    >>> round(restored.score_one({"latency": 20.0}), 1)
    14.6
    """

    _supervised: ClassVar[bool] = False  # river's pipelines ask every step this

    def __init__(
        self,
        *,
        feature: str | None = None,
        half_life: float = 100.0,
        min_observations: int = 20,
        clip: float = 4.0,
        relative_floor: float = 0.01,
        spread_floor: float = 1e-9,
        log_offset: float | None = None,
        direction: Literal["both", "up", "down"] = "both",
    ) -> None:
        self.feature = feature
        self.half_life = half_life
        self.min_observations = min_observations
        self.clip = clip
        self.relative_floor = relative_floor
        self.spread_floor = spread_floor
        self.log_offset = log_offset
        self.direction = direction
        self._alpha = -math.expm1(-math.log(2.0) / half_life)
        self._state = self.new_state()

    # ------------------------------------------------------------------ river interface

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Fold one observation into the centre and spread."""
        self.learn_value(self._state, self.transform(self._value(x)))

    def score_one(self, x: Mapping[str, float]) -> float:
        """``|x - centre| / spread`` (one-sided per ``direction``); 0 while warming up."""
        return self.score_value(self._state, self.transform(self._value(x)))

    # ------------------------------------------------------------------ low-level kernel

    @staticmethod
    def new_state() -> list[float]:
        """An empty per-stream state: ``[observations, centre, mean absolute deviation]``."""
        return [0.0, 0.0, 0.0]

    def transform(self, value: float) -> float:
        """The value on the scoring scale (``log(max(value, 0) + log_offset)`` if set)."""
        if self.log_offset is None:
            return value
        return math.log(max(value, 0.0) + self.log_offset)

    def spread(self, state: list[float]) -> float:
        """Robust standard deviation of the stream (floored)."""
        spread = _MAD_TO_SIGMA * state[2]
        centre = state[1]
        floor = self.relative_floor * (centre if centre >= 0.0 else -centre)
        if floor < self.spread_floor:  # noqa: PLR1730 - an if is cheaper than max() here
            floor = self.spread_floor
        return spread if spread > floor else floor

    def zscore_value(self, state: list[float], value: float) -> float:
        """Signed ``(value - centre) / spread`` on the scoring scale; 0 while warming up."""
        if state[0] < self.min_observations:
            return 0.0
        return (value - state[1]) / self.spread(state)

    def score_value(self, state: list[float], value: float) -> float:
        """The score of a transformed ``value`` against ``state``."""
        z = self.zscore_value(state, value)
        if self.direction == "up":
            return max(z, 0.0)
        if self.direction == "down":
            return max(-z, 0.0)
        return abs(z)

    def learn_value(self, state: list[float], value: float) -> None:
        """Fold a transformed ``value`` into ``state`` (in place)."""
        n = state[0] + 1.0
        state[0] = n
        if n == 1.0:
            state[1] = value
            state[2] = 0.0
            return
        centre = state[1]
        resid = value - centre
        dev = resid if resid >= 0.0 else -resid
        if n > self.min_observations:  # winsorize once warmed up
            limit = self.clip * self.spread(state)
            if dev > limit:
                resid = limit if resid > 0.0 else -limit
                dev = limit
        alpha = self._alpha
        weight = alpha if n * alpha >= 1.0 else 1.0 / n  # exact running means at first
        state[1] = centre + weight * resid
        state[2] += weight * (dev - state[2])

    # ------------------------------------------------------------------ state and params

    def to_state(self) -> dict[str, float]:
        """The learned state as a JSON-able dict."""
        n, centre, dev = self._state
        return {"n": n, "centre": centre, "dev": dev}

    @classmethod
    def from_state(cls, state: Mapping[str, float], **params: Any) -> RobustZScore:
        """A scorer with ``params`` and the learned ``state`` of :meth:`to_state`."""
        scorer = cls(**params)
        scorer._state = [float(state["n"]), float(state["centre"]), float(state["dev"])]
        return scorer

    # ------------------------------------------------------------------ conformance

    @classmethod
    def conformance_stream(cls, rng: random.Random) -> tuple[list[dict[str, float]], list[int]]:
        """A realistic latency stream with planted spikes (labels 1).

        Lognormal latencies (median 200 ms, sigma 0.5) with a daily cycle (+-30 %) sampled
        every 30 s for two days, a lasting +80 % step half-way (its first 10 points count
        as anomalies; afterwards the new level is normal) and 1 % planted spikes of
        8-30 x the median.
        """
        xs: list[dict[str, float]] = []
        labels: list[int] = []
        n = 2 * 2880
        for i in range(n):
            day = 1.0 + 0.3 * math.sin(2.0 * math.pi * i / 2880.0)
            level = 200.0 * day * (1.8 if i >= n // 2 else 1.0)
            value = level * math.exp(0.5 * rng.gauss(0.0, 1.0))
            label = 1 if n // 2 <= i < n // 2 + 10 else 0
            if i > 200 and rng.random() < 0.01:
                value = 200.0 * rng.uniform(8.0, 30.0)
                label = 1
            xs.append({"latency_ms": value})
            labels.append(label)
        return xs, labels
