"""``SeasonalRobustZScore``: a robust z-score of what a daily (or weekly) profile leaves over."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from agentwatch.detectors.base import Params, register_scorer

__all__ = ["SeasonalRobustZScore"]

_MAD_TO_SIGMA = 1.2533  # sqrt(pi / 2): mean absolute deviation -> standard deviation (normal)


@register_scorer("seasonal_robust_zscore")
class SeasonalRobustZScore(Params):
    """Robust z-score of one numeric feature after an additive seasonal profile.

    The stream is modelled as ``level + season[slot]``, where ``slot`` is the position of the
    observation's timestamp in a period (``period_s``, a day by default) cut into ``slots``
    equal slots: additive Holt-Winters without trend, learned from event time, so irregular
    or gappy sampling is fine. ``score_one`` is ``|x - (level + season[slot])| / spread``
    (or one side of it, see ``direction``), where ``spread`` is 1.2533 times an
    exponentially weighted mean absolute deviation of the residuals: a value that is normal
    at noon but not at 3 a.m. scores high at 3 a.m. Once warmed up, each residual is
    *winsorized* at ``clip`` spreads before it is folded in, so a spike moves neither the
    level, the profile nor the spread much; a lasting level shift is absorbed at the pace of
    ``half_life``.

    Parameters
    ----------
    feature
        Key of ``x`` to score; ``None`` (default) takes the first key other than
        ``time_key``.
    time_key
        Key of ``x`` holding the observation's time in epoch seconds (default ``"ts"``).
    period_s
        Length of the seasonal period in seconds (default 86,400: a day).
    slots
        Slots per period (default 24: hours of the day).
    half_life
        Half-life of the level and of the spread, in observations (default 100).
    season_half_life
        Half-life of each slot's offset, in visits of that slot (default 7: a week of days).
    min_observations
        Warm-up: observations folded in before any non-zero score (default 20).
    clip
        Residuals are winsorized at ``clip`` spreads when learning (default 4.0).
    relative_floor
        Lower bound of the spread as a fraction of ``|level|`` (default 0.01).
    spread_floor
        Absolute lower bound of the spread (default 1e-9).
    direction
        ``"both"`` (default), ``"up"`` (only values above the profile) or ``"down"``.

    Notes
    -----
    Use it for streams with a daily rhythm (traffic, request rates, prices by hour); on a
    stream without one it behaves like
    :class:`~agentwatch.detectors.robust_zscore.RobustZScore` with a slightly noisier
    centre (each slot's offset wanders around zero). Limits: one period only (a daily
    profile does not know weekends; use ``period_s=604800`` and ``slots=168`` for a weekly
    one, which needs weeks of history); a slot is learned only from its own visits, so the
    profile takes a few periods to settle and a one-off change of rhythm (a holiday) scores
    as anomalous; a slow creep is absorbed by the level and is invisible (use
    :class:`~agentwatch.detectors.drift.DriftDetector`).

    The per-stream state is three floats and two lists of ``slots`` floats.

    Examples
    --------
    >>> scorer = SeasonalRobustZScore(slots=2, period_s=2.0, min_observations=4)
    >>> for i in range(40):  # 1.0 at even seconds, 3.0 at odd ones
    ...     scorer.learn_one({"ts": float(i), "load": 1.0 + 2.0 * (i % 2)})
    >>> scorer.score_one({"ts": 41.0, "load": 3.0}) < 1.0  # normal for an odd second
    True
    >>> scorer.score_one({"ts": 42.0, "load": 3.0}) > 5.0  # not for an even one
    True
    >>> restored = SeasonalRobustZScore.from_state(scorer.to_state(), **scorer.params())
    >>> restored.score_one({"ts": 42.0, "load": 3.0}) == scorer.score_one({"ts": 42.0, "load": 3.0})
    True
    """

    _supervised: ClassVar[bool] = False  # river's pipelines ask every step this

    def __init__(
        self,
        *,
        feature: str | None = None,
        time_key: str = "ts",
        period_s: float = 86_400.0,
        slots: int = 24,
        half_life: float = 100.0,
        season_half_life: float = 7.0,
        min_observations: int = 20,
        clip: float = 4.0,
        relative_floor: float = 0.01,
        spread_floor: float = 1e-9,
        direction: Literal["both", "up", "down"] = "both",
    ) -> None:
        if slots < 1 or period_s <= 0.0:
            raise ValueError("slots must be >= 1 and period_s > 0")
        self.feature = feature
        self.time_key = time_key
        self.period_s = period_s
        self.slots = slots
        self.half_life = half_life
        self.season_half_life = season_half_life
        self.min_observations = min_observations
        self.clip = clip
        self.relative_floor = relative_floor
        self.spread_floor = spread_floor
        self.direction = direction
        self._alpha = -math.expm1(-math.log(2.0) / half_life)
        self._gamma = -math.expm1(-math.log(2.0) / season_half_life)
        self._n = 0.0
        self._level = 0.0
        self._dev = 0.0
        self._season = [0.0] * slots
        self._visits = [0.0] * slots

    # ------------------------------------------------------------------ river interface

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Fold one observation into the level, its slot's offset and the spread."""
        ts, value = self._read(x)
        slot = self.slot(ts)
        n = self._n + 1.0
        self._n = n
        if n == 1.0:
            self._level = value
            self._visits[slot] = 1.0
            return
        resid = value - self._level - self._season[slot]
        dev = abs(resid)
        if n > self.min_observations:  # winsorize once warmed up
            limit = self.clip * self.spread()
            if dev > limit:
                resid = math.copysign(limit, resid)
                dev = limit
        alpha = self._alpha if n * self._alpha >= 1.0 else 1.0 / n
        self._level += alpha * resid
        visits = self._visits[slot] + 1.0
        self._visits[slot] = visits
        gamma = self._gamma if visits * self._gamma >= 1.0 else 1.0 / visits
        # the slot's offset moves towards what the updated level leaves over
        self._season[slot] += gamma * (resid - alpha * resid)
        self._dev += alpha * (dev - self._dev)

    def score_one(self, x: Mapping[str, float]) -> float:
        """``|x - (level + season[slot])| / spread`` (one-sided per ``direction``); 0 while
        warming up."""
        if self._n < self.min_observations:
            return 0.0
        ts, value = self._read(x)
        z = (value - self._level - self._season[self.slot(ts)]) / self.spread()
        if self.direction == "up":
            return max(z, 0.0)
        if self.direction == "down":
            return max(-z, 0.0)
        return abs(z)

    # ------------------------------------------------------------------ helpers

    def slot(self, ts: float) -> int:
        """The slot of epoch second ``ts`` in the period."""
        return int((ts % self.period_s) * self.slots / self.period_s) % self.slots

    def spread(self) -> float:
        """Robust standard deviation of the residuals (floored)."""
        floor = max(self.relative_floor * abs(self._level), self.spread_floor)
        return max(_MAD_TO_SIGMA * self._dev, floor)

    def _read(self, x: Mapping[str, float]) -> tuple[float, float]:
        ts = float(x[self.time_key])
        if self.feature is not None:
            return ts, float(x[self.feature])
        for key, value in x.items():
            if key != self.time_key:
                return ts, float(value)
        raise KeyError(f"no feature besides {self.time_key!r} in {sorted(x)}")

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """The learned state as a JSON-able dict."""
        return {
            "n": self._n,
            "level": self._level,
            "dev": self._dev,
            "season": list(self._season),
            "visits": list(self._visits),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **params: Any) -> SeasonalRobustZScore:
        """A scorer with ``params`` and the learned ``state`` of :meth:`to_state`."""
        scorer = cls(**params)
        if len(state["season"]) != scorer.slots:
            raise ValueError(f"state has {len(state['season'])} slots, params {scorer.slots}")
        scorer._n = float(state["n"])
        scorer._level = float(state["level"])
        scorer._dev = float(state["dev"])
        scorer._season = [float(v) for v in state["season"]]
        scorer._visits = [float(v) for v in state["visits"]]
        return scorer

    # ------------------------------------------------------------------ conformance

    @classmethod
    def conformance_stream(cls, rng: random.Random) -> tuple[list[dict[str, float]], list[int]]:
        """Ten days of a request rate every 5 minutes with a strong daily cycle.

        Around 100 requests a minute at night and 400 by day (a smooth cycle), Gaussian
        noise of 15; planted anomalies (label 1), 1 % of points after the first two days:
        spikes of +90 to +180 and *out-of-hours* values, a daytime level at night (normal
        for the day, anomalous for the hour: what a plain z-score misses).
        """
        xs: list[dict[str, float]] = []
        labels: list[int] = []
        start = 1_700_000_000.0 - (1_700_000_000.0 % 86_400.0)
        for i in range(10 * 288):
            ts = start + 300.0 * i
            hour = (ts % 86_400.0) / 3_600.0
            profile = 250.0 - 150.0 * math.cos(2.0 * math.pi * hour / 24.0)
            value = profile + rng.gauss(0.0, 15.0)
            label = 0
            if i > 2 * 288 and rng.random() < 0.01:
                label = 1
                if profile < 180.0 and rng.random() < 0.5:
                    value = 380.0 + rng.gauss(0.0, 15.0)  # a daytime load at night
                else:
                    value = profile + rng.uniform(90.0, 180.0)
            xs.append({"ts": ts, "requests_per_min": value})
            labels.append(label)
        return xs, labels
