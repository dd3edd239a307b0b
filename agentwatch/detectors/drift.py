"""``DriftDetector``: Page-Hinkley test for a slow, lasting change of a stream's level."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from agentwatch.detectors.base import FeatureScorer, register_scorer

__all__ = ["DriftDetector"]

_MAD_TO_SIGMA = 1.2533


@register_scorer("drift")
class DriftDetector(FeatureScorer):
    """Page-Hinkley change detector on a standardized stream; score = statistic / threshold.

    Each observation is standardized against the stream's running mean and robust scale
    (1.2533 x mean absolute deviation), winsorized at ``clip`` and accumulated as in
    Page (1954) and Hinkley (1971): ``g = max(0, forget * g + z - delta)`` for an upward
    change (mirrored for downward). ``g`` stays near 0 while the stream is stationary (each
    step loses ``delta`` on average) and grows once the level has moved by more than
    ``delta`` standard deviations; the score ``g / threshold`` reaches 1 when the change
    is significant. Because ``delta`` and ``threshold`` are in units of the stream's own
    noise, one parameter set works for any scale.

    Parameters
    ----------
    feature
        Key of ``x`` to watch; ``None`` (default) takes the first value of ``x``.
    delta
        Tolerated shift of the mean, in standard deviations (default 0.5).
    threshold
        The Page-Hinkley threshold lambda, in standard deviations (default 30). Under
        stationary Gaussian noise a false alarm needs about ``exp(2 * delta * threshold)``
        observations.
    clip
        Standardized values are winsorized at ``+-clip`` (default 3.0), so isolated
        outliers of a heavy-tailed stream cannot push the statistic over the threshold.
    min_observations
        Warm-up: observations that only learn the mean and scale (default 30).
    half_life
        ``None`` (default): the reference mean is the mean of everything since the start
        (or the last reset), the classic test. A number makes it an exponentially weighted
        mean with that half-life in observations, which forgets old regimes but also
        absorbs changes slower than the half-life.
    forget
        Fading factor of the cumulative sum (default 1.0, no fading; river uses 0.9999).
    direction
        ``"up"`` (default), ``"down"`` or ``"both"``.
    reset_on_drift
        ``False`` (default): the score stays high while the stream stays away from its
        reference level. ``True``: when ``learn_one`` takes the statistic over the
        threshold, start afresh on the new regime (river's detectors do this).

    Notes
    -----
    Catches a slow creep (a few percent per hundred observations) or a lasting step; it
    ignores stationary noise, single outliers and short bursts that a spike detector such
    as :class:`~agentwatch.detectors.robust_zscore.RobustZScore` flags. Limits: seasonality
    and autocorrelation look like drift to it, so feed it values whose cycle is removed (a
    ratio to the same hour's level or to peers) or aggregates over windows longer than the
    correlation; the scale is learned in the warm-up and then only from winsorized values, so
    a warm-up on an unrepresentative stretch sets a wrong scale. Time to detect a change of
    ``d`` standard deviations is about ``threshold / (d - delta)`` observations.

    Examples
    --------
    >>> rng = random.Random(1)
    >>> ph = DriftDetector()
    >>> for _ in range(500):
    ...     ph.learn_one({"cost": rng.gauss(1.0, 0.2)})
    >>> ph.score_one({"cost": 1.1}) < 0.1
    True
    >>> for i in range(400):  # the level creeps up by 0.5 % per observation
    ...     x = {"cost": rng.gauss(1.0 + 0.005 * i, 0.2)}
    ...     if ph.score_one(x) >= 1.0:
    ...         break
    ...     ph.learn_one(x)
    >>> 50 < i < 120  # detected when the level is up by 25-60 %
    True
    """

    _supervised: ClassVar[bool] = False  # river's pipelines ask every step this

    def __init__(
        self,
        *,
        feature: str | None = None,
        delta: float = 0.5,
        threshold: float = 30.0,
        clip: float = 3.0,
        min_observations: int = 30,
        half_life: float | None = None,
        forget: float = 1.0,
        direction: Literal["up", "down", "both"] = "up",
        reset_on_drift: bool = False,
    ) -> None:
        self.feature = feature
        self.delta = delta
        self.threshold = threshold
        self.clip = clip
        self.min_observations = min_observations
        self.half_life = half_life
        self.forget = forget
        self.direction = direction
        self.reset_on_drift = reset_on_drift
        self._alpha = 0.0 if half_life is None else -math.expm1(-math.log(2.0) / half_life)
        self._state = self.new_state()

    # ------------------------------------------------------------------ river interface

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Fold one observation in (and reset after a detected drift, if configured)."""
        self.learn_value(self._state, self._value(x))

    def score_one(self, x: Mapping[str, float]) -> float:
        """The statistic after ``x``, divided by ``threshold`` (>= 1: drift); no learning."""
        return self.score_value(self._state, self._value(x))

    # ------------------------------------------------------------------ low-level kernel

    @staticmethod
    def new_state() -> list[float]:
        """An empty state: ``[observations, mean, mean abs deviation, g_up, g_down]``."""
        return [0.0, 0.0, 0.0, 0.0, 0.0]

    def scale(self, state: list[float]) -> float:
        """Robust standard deviation of the stream (plus a floor of 1e-9 + 1e-6 x |mean|)."""
        return _MAD_TO_SIGMA * state[2] + 1e-9 + 1e-6 * abs(state[1])

    def standardize(self, state: list[float], value: float) -> float:
        """``value`` in (winsorized) standard deviations from the reference mean."""
        z = (value - state[1]) / (_MAD_TO_SIGMA * state[2] + 1e-9 + 1e-6 * abs(state[1]))
        clip = self.clip
        return clip if z > clip else (-clip if z < -clip else z)

    def statistic(self, state: list[float], value: float) -> tuple[float, float]:
        """The upward and downward statistics after ``value`` (not stored)."""
        if state[0] < self.min_observations:
            return 0.0, 0.0
        z = self.standardize(state, value)
        forget = self.forget
        g_up = max(0.0, forget * state[3] + z - self.delta)
        g_down = max(0.0, forget * state[4] - z - self.delta)
        return g_up, g_down

    def score(self, state: list[float]) -> float:
        """The stored statistic over ``threshold`` (per ``direction``)."""
        if self.direction == "up":
            return state[3] / self.threshold
        if self.direction == "down":
            return state[4] / self.threshold
        return max(state[3], state[4]) / self.threshold

    def score_value(self, state: list[float], value: float) -> float:
        """The score of ``value``: the statistic it would lead to over ``threshold``."""
        g_up, g_down = self.statistic(state, value)
        if self.direction == "up":
            return g_up / self.threshold
        if self.direction == "down":
            return g_down / self.threshold
        return max(g_up, g_down) / self.threshold

    def advance(self, state: list[float], value: float) -> float:
        """Move the statistics by ``value``, leaving the reference alone.

        Returns the standardized, winsorized ``value`` (0 during the warm-up, when the
        statistics do not move). With :meth:`learn_reference` this splits
        :meth:`learn_value` for callers that must not learn from what they flag.
        """
        if state[0] < self.min_observations:
            return 0.0
        mean = state[1]
        z = (value - mean) / (_MAD_TO_SIGMA * state[2] + 1e-9 + 1e-6 * abs(mean))
        clip = self.clip
        if z > clip:
            z = clip
        elif z < -clip:
            z = -clip
        delta = self.delta
        forget = self.forget
        g = forget * state[3] + z - delta
        state[3] = g if g > 0.0 else 0.0
        g = forget * state[4] - z - delta
        state[4] = g if g > 0.0 else 0.0
        return z

    def learn_reference(self, state: list[float], value: float) -> None:
        """Fold ``value`` into the reference mean and scale (winsorized after warm-up)."""
        n = state[0] + 1.0
        mean = state[1]
        resid = value - mean
        dev = resid if resid >= 0.0 else -resid
        if n > self.min_observations:
            limit = self.clip * (_MAD_TO_SIGMA * state[2] + 1e-9 + 1e-6 * abs(mean))
            if dev > limit:
                resid = limit if resid > 0.0 else -limit
                dev = limit
        alpha = self._alpha
        weight = alpha if alpha and n * alpha >= 1.0 else 1.0 / n
        state[0] = n
        state[1] = mean + weight * resid
        state[2] += weight * (dev - state[2])

    def learn_value(self, state: list[float], value: float) -> None:
        """Fold ``value`` into ``state`` in place; reset it after a drift if configured."""
        if self.reset_on_drift and self.score_value(state, value) >= 1.0:
            state[:] = self.new_state()
        self.advance(state, value)
        self.learn_reference(state, value)

    # ------------------------------------------------------------------ state and params

    def to_state(self) -> dict[str, float]:
        """The learned state as a JSON-able dict."""
        n, mean, dev, g_up, g_down = self._state
        return {"n": n, "mean": mean, "dev": dev, "g_up": g_up, "g_down": g_down}

    @classmethod
    def from_state(cls, state: Mapping[str, float], **params: Any) -> DriftDetector:
        """A detector with ``params`` and the learned ``state`` of :meth:`to_state`."""
        scorer = cls(**params)
        keys = ("n", "mean", "dev", "g_up", "g_down")
        scorer._state = [float(state[key]) for key in keys]
        return scorer

    # ------------------------------------------------------------------ conformance

    @classmethod
    def conformance_stream(cls, rng: random.Random) -> tuple[list[dict[str, float]], list[int]]:
        """Log cost per call of an agent whose prompts slowly grow (labels 1 on the creep).

        Heavy-tailed noise (Student t with 3 degrees of freedom, scale 0.4) around a flat
        level for 3,000 calls, including isolated 10 x outliers (labelled normal: a drift
        detector must ignore them), then a linear creep to +1.4 (4 x the cost) over 3,000
        calls; creep calls are labelled once it exceeds 0.3 (+35 %).
        """
        xs: list[dict[str, float]] = []
        labels: list[int] = []
        for i in range(6000):
            shift = 0.0 if i < 3000 else 1.4 * (i - 3000) / 3000.0
            chi2 = sum(rng.gauss(0.0, 1.0) ** 2 for _ in range(3))
            noise = 0.4 * rng.gauss(0.0, 1.0) / math.sqrt(chi2 / 3.0)
            if rng.random() < 0.005:
                noise += math.log(10.0)
            xs.append({"log_cost": shift + noise})
            labels.append(1 if shift > 0.3 else 0)
        return xs, labels
