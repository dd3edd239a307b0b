"""``HalfSpaceTreesScorer``: river's Half-Space Trees on robustly scaled feature vectors."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar

from river import anomaly
from river.tree import padded

from agentwatch.detectors.base import Params, register_scorer

__all__ = ["HalfSpaceTreesScorer"]

_TINY = 1e-12
_Branch: Any = padded.PaddedBranch  # river's tree nodes (untyped)
_Leaf: Any = padded.PaddedLeaf


class _P2Quantile:
    """Running quantile by the P² algorithm (Jain & Chlamtac, 1985), state in plain floats.

    The same arithmetic, step for step, as river's ``stats.Quantile`` (whose state is a
    Rust object), so the estimates are identical; here the state is five marker heights,
    their positions and desired positions, which serialize to JSON.
    """

    __slots__ = ("count", "desired", "heights", "positions", "q")

    def __init__(self, q: float) -> None:
        self.q = q
        self.count = 0  # the first five observations are kept; 6 once the markers run
        self.heights = [0.0] * 5
        self.positions = [1.0, 2.0, 3.0, 4.0, 5.0]
        self.desired = [1.0, 1.0 + 2.0 * q, 1.0 + 4.0 * q, 3.0 + 2.0 * q, 5.0]

    def update(self, x: float) -> None:
        h = self.heights
        if self.count < 5:
            h[self.count] = x
            self.count += 1
            return
        if self.count == 5:
            h.sort()
            self.count = 6
        if x < h[0]:
            h[0] = x
            k = 1
        else:
            k = 4
            for i in range(1, 5):
                if h[i - 1] <= x < h[i]:
                    k = i
                    break
            else:
                h[4] = max(h[4], x)
        pos = self.positions
        for i in range(k, 5):
            pos[i] += 1.0
        q = self.q
        steps = (0.0, q / 2.0, q, (1.0 + q) / 2.0, 1.0)
        desired = self.desired
        for i in range(5):
            desired[i] += steps[i]
        for i in range(1, 4):
            n = pos[i]
            d = desired[i] - n
            if (d >= 1.0 and pos[i + 1] - n > 1.0) or (d <= -1.0 and pos[i - 1] - n < -1.0):
                d = math.copysign(1.0, d)
                here, up, down = h[i], h[i + 1], h[i - 1]
                n_up, n_down = pos[i + 1], pos[i - 1]
                outer = d / (n_up - n_down)
                left = (n - n_down + d) * (up - here) / (n_up - n)
                right = (n_up - n - d) * (here - down) / (n - n_down)
                parabolic = here + outer * (left + right)
                if down < parabolic < up:
                    h[i] = parabolic
                else:
                    j = i + int(d)
                    h[i] = here + d * (h[j] - here) / (pos[j] - n)
                pos[i] = n + d

    def get(self) -> float | None:
        """The estimate; ``None`` before the first observation."""
        count = self.count
        if count == 0:
            return None
        if count > 5:
            return self.heights[2]
        first = sorted(self.heights[:count])
        return first[int(min(count - 1.0, count * self.q))]

    def to_state(self) -> list[Any]:
        return [self.count, list(self.heights), list(self.positions), list(self.desired)]

    @classmethod
    def from_state(cls, q: float, state: list[Any]) -> _P2Quantile:
        quantile = cls(q)
        count, heights, positions, desired = state
        quantile.count = int(count)
        quantile.heights = [float(v) for v in heights]
        quantile.positions = [float(v) for v in positions]
        quantile.desired = [float(v) for v in desired]
        return quantile


def _tree_to_list(node: Any) -> list[Any]:
    """A padded tree in depth-first order: ``[feature, threshold, l_mass, r_mass]`` per
    branch, ``[l_mass, r_mass]`` per leaf."""
    out: list[Any] = []
    for item in node.iter_dfs():
        if isinstance(item, _Branch):
            out.append([item.feature, item.threshold, item.l_mass, item.r_mass])
        else:
            out.append([item.l_mass, item.r_mass])
    return out


def _tree_from_list(nodes: list[Any]) -> Any:
    """The inverse of :func:`_tree_to_list`."""
    items = iter(nodes)

    def build() -> Any:
        item = next(items)
        if len(item) == 2:
            return _Leaf(l_mass=int(item[0]), r_mass=int(item[1]))
        left = build()
        right = build()
        return _Branch(left, right, item[0], float(item[1]), int(item[2]), int(item[3]))

    return build()


@register_scorer("half_space_trees")
class HalfSpaceTreesScorer(Params):
    """Half-Space Trees (Tan, Ting & Liu, 2011) over numeric feature dicts, robustly scaled.

    A river-compatible scorer (``learn_one`` / ``score_one``, higher = more anomalous, in
    ``[0, 1]``) wrapping :class:`river.anomaly.HalfSpaceTrees`. The trees need features in
    known bounds, so each value is scaled first:

    * with ``limits`` (``{feature: (low, high)}``) the bounds are fixed and given to the
      trees as they are (features without limits are taken to lie in ``[0, 1]``);
    * without ``limits`` (default) each feature is centred on its running median and scaled
      by its running inter-quartile range (P² estimates, identical to river's
      ``stats.Quantile`` and ``stats.IQR`` but kept in plain floats), then mapped so that
      ``span`` IQRs either side of the median fill ``[0, 1]``. Unlike a min-max scaler, one
      wild value moves neither the median nor the IQR, so it cannot squash the scale of
      everything after it.

    The trees are random (``seed``) and score a point by the mass of normal data around it
    in the previous window of ``window_size`` learned points, so the score is 0 until one
    window has been learned. Learn only from points you did not flag (wrap the scorer in
    :class:`~agentwatch.detectors.thresholded.Thresholded`), or a lasting anomaly becomes
    the norm one window later.

    The learned state (the scaling quantiles, and each tree's splits and window masses)
    round-trips through JSON with :meth:`to_state` and :meth:`from_state`; it grows with
    ``n_trees * 2 ** height`` (about 0.3 MB of JSON at the defaults), so it suits a scorer per
    fleet or per stream, not one per agent. The class declares river's ``_supervised =
    False``, so it can end a ``river.compose.Pipeline``.

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
    >>> restored = HalfSpaceTreesScorer.from_state(scorer.to_state(), **scorer.params())
    >>> round(restored.score_one({"events_per_min": 6.0, "failure_share": 0.6}), 2)
    0.98
    """

    _supervised: ClassVar[bool] = False  # river's pipelines ask every step this

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
        # per feature: running median, lower and upper quartile
        self._scale: dict[str, tuple[_P2Quantile, _P2Quantile, _P2Quantile]] = {}

    # ------------------------------------------------------------------ river interface

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Fold one point into the trees (scaled as it is now), then into the scaling."""
        self._hst.learn_one(self.transform_one(x))
        if self.limits is None:
            for key, value in x.items():
                scale = self._scale.get(key)
                if scale is None:
                    scale = self._scale[key] = (
                        _P2Quantile(0.5),
                        _P2Quantile(0.25),
                        _P2Quantile(0.75),
                    )
                for quantile in scale:
                    quantile.update(value)

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
            quantiles = self._scale.get(key)
            if quantiles is None:
                out[key] = 0.5
                continue
            median, low, high = quantiles
            centre = median.get() or 0.0
            iqr = (high.get() or 0.0) - (low.get() or 0.0)
            scale = max(iqr, _TINY, 1e-9 * abs(centre))
            out[key] = 0.5 + (float(value) - centre) / (width * scale)
        return out

    # ------------------------------------------------------------------ state

    def to_state(self) -> dict[str, Any]:
        """The learned state as a JSON-able dict: the scaling quantiles and the trees.

        Each tree is its nodes in depth-first order (split feature and threshold, and the
        latest and reference window masses), so a restored scorer needs no random draws.
        """
        hst = self._hst
        return {
            "scale": {
                key: [quantile.to_state() for quantile in quantiles]
                for key, quantiles in self._scale.items()
            },
            "counter": hst.counter,
            "first_window": hst._first_window,
            "trees": [_tree_to_list(tree) for tree in hst.trees],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **params: Any) -> HalfSpaceTreesScorer:
        """A scorer with ``params`` and the learned ``state`` of :meth:`to_state`."""
        scorer = cls(**params)
        scorer._scale = {
            key: (
                _P2Quantile.from_state(0.5, quantiles[0]),
                _P2Quantile.from_state(0.25, quantiles[1]),
                _P2Quantile.from_state(0.75, quantiles[2]),
            )
            for key, quantiles in state["scale"].items()
        }
        hst = scorer._hst
        hst.trees = [_tree_from_list(nodes) for nodes in state["trees"]]
        hst._tree_nodes = [list(tree.iter_dfs()) for tree in hst.trees]
        hst.counter = int(state["counter"])
        hst._first_window = bool(state["first_window"])
        return scorer

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
