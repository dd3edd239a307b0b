"""``HalfSpaceTreesScorer``: river's Half-Space Trees on robustly scaled feature vectors."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

from river import anomaly, stats

from agentwatch.detectors.base import register_scorer

__all__ = ["HalfSpaceTreesScorer"]

_TINY = 1e-12


@register_scorer("half_space_trees")
class HalfSpaceTreesScorer:
    """Half-Space Trees (Tan, Ting & Liu, 2011) over numeric feature dicts, robustly scaled.

    A river-compatible scorer (``learn_one`` / ``score_one``, higher = more anomalous, in
    ``[0, 1]``) wrapping :class:`river.anomaly.HalfSpaceTrees`. The trees need features in
    known bounds, so each value is scaled first:

    * with ``limits`` (``{feature: (low, high)}``) the bounds are fixed and given to the
      trees as they are (features without limits are taken to lie in ``[0, 1]``);
    * without ``limits`` (default) each feature is centred on its running median and scaled
      by its running inter-quartile range (river's P-square ``stats.Quantile`` and
      ``stats.IQR``), then mapped so that ``span`` IQRs either side of the median fill
      ``[0, 1]``. Unlike a min-max scaler, one wild value moves neither the median nor the
      IQR, so it cannot squash the scale of everything after it.

    The trees are random (``seed``) and score a point by the mass of normal data around it
    in the previous window of ``window_size`` learned points, so the score is 0 until one
    window has been learned. Learn only from points you did not flag (wrap the scorer in
    :class:`~agentwatch.detectors.thresholded.Thresholded`), or a lasting anomaly becomes
    the norm one window later.

    Good at: points that fall where the recent data had little mass, on any mix of features
    (window vectors from :func:`~agentwatch.detectors.features.window_features`, per-call
    latency and cost). Weak at: anomalies that arrive in dense clusters (a window full of
    them becomes normal) and at extrapolation, as every isolation method: all values beyond
    the edge of the bounds land in the same outermost cell.

    Parameters
    ----------
    n_trees
        Number of trees (default 25). Cost grows linearly.
    height
        Depth of each tree (default 8; ``2 ** (height + 1) - 1`` nodes per tree).
    window_size
        Points per reference window (default 250).
    limits
        Fixed ``{feature: (low, high)}`` bounds; ``None`` (default) scales robustly.
    span
        Without ``limits``: how many IQRs either side of the median map to ``[0, 1]``
        (default 4.0).
    seed
        Seed of the random trees (default 0): equal seeds give equal scores.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> scorer = HalfSpaceTreesScorer()
    >>> for _ in range(1000):
    ...     scorer.learn_one({"events_per_min": rng.gauss(6.0, 1.0),
    ...                       "failure_share": abs(rng.gauss(0.03, 0.02))})
    >>> def score(rate, failed):
    ...     return round(scorer.score_one({"events_per_min": rate, "failure_share": failed}), 2)
    >>> score(6.2, 0.03), score(5.0, 0.05)  # normal windows
    (0.68, 0.78)
    >>> score(6.0, 0.6), score(30.0, 0.03)  # an error storm, a runaway loop
    (0.98, 0.99)
    >>> HalfSpaceTreesScorer(**scorer.params()).params() == scorer.params()
    True
    """

    def __init__(
        self,
        *,
        n_trees: int = 25,
        height: int = 8,
        window_size: int = 250,
        limits: Mapping[str, tuple[float, float]] | None = None,
        span: float = 4.0,
        seed: int = 0,
    ) -> None:
        if n_trees < 1 or height < 1 or window_size < 1:
            raise ValueError("n_trees, height and window_size must be >= 1")
        if not (math.isfinite(span) and span > 0):
            raise ValueError(f"span must be a positive number, got {span}")
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.limits = limits
        self.span = span
        self.seed = seed
        self._hst: Any = anomaly.HalfSpaceTrees(
            n_trees=n_trees,
            height=height,
            window_size=window_size,
            limits=(
                {key: (float(low), float(high)) for key, (low, high) in limits.items()}
                if limits is not None
                else None
            ),
            seed=seed,
        )
        self._median: dict[str, Any] = {}
        self._iqr: dict[str, Any] = {}

    # ------------------------------------------------------------------ river interface

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Fold one point into the trees (scaled as it is now), then into the scaling."""
        self._hst.learn_one(self.transform_one(x))
        if self.limits is None:
            for key, value in x.items():
                median = self._median.get(key)
                if median is None:
                    median = self._median[key] = stats.Quantile(0.5)
                    self._iqr[key] = stats.IQR(0.25, 0.75)
                median.update(value)
                self._iqr[key].update(value)

    def score_one(self, x: Mapping[str, float]) -> float:
        """Anomaly score in ``[0, 1]`` (0 until one window has been learned)."""
        return float(self._hst.score_one(self.transform_one(x)))

    def transform_one(self, x: Mapping[str, float]) -> dict[str, float]:
        """The point as the trees see it (robustly scaled unless ``limits`` were given)."""
        if self.limits is not None:
            return {key: float(value) for key, value in x.items()}
        out: dict[str, float] = {}
        width = 2.0 * self.span
        for key, value in x.items():
            median = self._median.get(key)
            if median is None:
                out[key] = 0.5
                continue
            centre = median.get() or 0.0
            iqr = self._iqr[key].get() or 0.0
            scale = max(iqr, _TINY, 1e-9 * abs(centre))
            out[key] = 0.5 + (float(value) - centre) / (width * scale)
        return out

    # ------------------------------------------------------------------ params

    def params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def clone(self) -> HalfSpaceTreesScorer:
        """A fresh, untrained scorer with the same parameters."""
        return type(self)(**self.params())

    # ------------------------------------------------------------------ conformance

    @classmethod
    def conformance_stream(cls, rng: random.Random) -> tuple[list[dict[str, float]], list[int]]:
        """Five-minute window vectors of one busy agent, with 2 % planted incidents.

        3,000 windows: events per minute lognormal around 6 with a daily cycle, cost per
        event lognormal around 0.004 USD, failure share binomial around 3 %, denied share
        almost always 0. Planted windows (label 1) are error storms (failure share 50-80 %),
        cost explosions (cost per event x 5-10), runaway loops (events per minute x 4-8 at an
        unchanged cost per event) or privilege probing (denied share 10-30 %).
        """
        xs: list[dict[str, float]] = []
        labels: list[int] = []
        n = 3000
        for i in range(n):
            day = 1.0 + 0.3 * math.sin(2.0 * math.pi * i / 288.0)
            rate = 6.0 * day * math.exp(0.25 * rng.gauss(0.0, 1.0))
            per_event = 0.004 * math.exp(0.3 * rng.gauss(0.0, 1.0))
            events = max(1, round(rate * 5.0))
            failed = sum(rng.random() < 0.03 for _ in range(events)) / events
            denied = 1.0 / events if rng.random() < 0.02 else 0.0
            label = 0
            if i > 500 and rng.random() < 0.02:
                label = 1
                kind = rng.randrange(4)
                if kind == 0:
                    failed = rng.uniform(0.5, 0.8)
                elif kind == 1:
                    per_event *= rng.uniform(5.0, 10.0)
                elif kind == 2:
                    rate *= rng.uniform(4.0, 8.0)
                else:
                    denied = rng.uniform(0.1, 0.3)
                    failed = max(failed, denied)
            xs.append(
                {
                    "events_per_min": rate,
                    "cost_per_min": rate * per_event,
                    "cost_per_event": per_event,
                    "failure_share": failed,
                    "denied_share": denied,
                }
            )
            labels.append(label)
        return xs, labels
