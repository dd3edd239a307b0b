"""``Thresholded``: wrap any scorer so that it never learns from what it flags."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any, ClassVar

from agentwatch.detectors.base import Scorer, register_scorer

__all__ = ["Thresholded"]


@register_scorer("thresholded")
class Thresholded:
    """A scorer plus a threshold: flags at or above it, and learns only from the rest.

    Composition, not subclassing: any object with river's ``learn_one`` / ``score_one``
    (a scorer of this package, a river ``anomaly`` model) can be wrapped. ``learn_one``
    first scores ``x`` and folds it into the wrapped scorer only if the score is below
    ``threshold``, so an anomaly never becomes part of the baseline that judges the next
    observation (a long burst stays visible for its whole length instead of teaching the
    model that bursts are normal).

    Parameters
    ----------
    scorer
        The wrapped scorer; ``None`` (default) wraps a default
        :class:`~agentwatch.detectors.robust_zscore.RobustZScore`.
    threshold
        Scores at or above it are anomalies (default 4.0).
    patience
        ``None`` (default): flagged observations are never learned. A number ``n`` accepts
        a new normal after ``n`` consecutive flagged observations (they are then learned,
        from the one that completes the run on), so a lasting, legitimate level shift stops
        alerting; choose it longer than the anomalies that must stay visible.

    Notes
    -----
    Limits: with ``patience=None`` a lasting legitimate change (a new price, a bigger
    instance) is flagged forever, since the wrapped model never sees the new level; pair it
    with a peer comparison (as the agent detectors do) or set ``patience``. The wrapper
    keeps a reference to ``scorer`` and mutates it.

    Examples
    --------
    >>> from agentwatch.detectors.robust_zscore import RobustZScore
    >>> guard = Thresholded(RobustZScore(min_observations=5), threshold=4.0)
    >>> for value in [10.0, 11.0, 9.0, 10.5, 9.5, 10.0]:
    ...     guard.learn_one({"x": value})
    >>> before = guard.scorer.to_state()
    >>> guard.is_anomaly({"x": 40.0}), guard.is_anomaly({"x": 10.3})
    (True, False)
    >>> guard.learn_one({"x": 40.0})  # flagged: not learned
    >>> guard.scorer.to_state() == before
    True
    """

    _supervised: ClassVar[bool] = False  # river's pipelines ask every step this

    def __init__(
        self, scorer: Scorer | None = None, threshold: float = 4.0, patience: int | None = None
    ) -> None:
        self.scorer = scorer
        self.threshold = threshold
        self.patience = patience
        if scorer is None:
            from agentwatch.detectors.robust_zscore import RobustZScore

            scorer = RobustZScore()
        self._scorer: Any = scorer
        self._run = 0

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Learn ``x`` unless it scores at or above ``threshold``."""
        if self._scorer.score_one(x) < self.threshold:
            self._run = 0
            self._scorer.learn_one(x)
            return
        self._run += 1
        if self.patience is not None and self._run >= self.patience:
            self._scorer.learn_one(x)

    def score_one(self, x: Mapping[str, float]) -> float:
        """The wrapped scorer's score."""
        return float(self._scorer.score_one(x))

    def is_anomaly(self, x: Mapping[str, float]) -> bool:
        """Whether ``x`` scores at or above ``threshold``."""
        return self.score_one(x) >= self.threshold

    @property
    def wrapped(self) -> Any:
        """The scorer actually in use (the default one when ``scorer`` was ``None``)."""
        return self._scorer

    def to_state(self) -> dict[str, Any]:
        """The wrapped scorer's state (if it has ``to_state``) and the current flagged run."""
        inner = self._scorer.to_state() if hasattr(self._scorer, "to_state") else None
        return {"scorer": inner, "run": self._run}

    @classmethod
    def from_state(cls, state: Mapping[str, Any], **params: Any) -> Thresholded:
        """A wrapper with ``params`` whose wrapped scorer is restored from ``state``."""
        wrapper = cls(**params)
        inner = wrapper._scorer
        if state.get("scorer") is not None:
            wrapper._scorer = type(inner).from_state(state["scorer"], **inner.params())
        wrapper._run = int(state.get("run", 0))
        return wrapper

    def params(self) -> dict[str, Any]:
        """The constructor parameters."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    def clone(self) -> Thresholded:
        """A fresh wrapper around a fresh clone of the wrapped scorer."""
        params = self.params()
        if self.scorer is not None and hasattr(self.scorer, "clone"):
            params["scorer"] = self.scorer.clone()
        return type(self)(**params)

    @classmethod
    def conformance_stream(cls, rng: random.Random) -> tuple[list[dict[str, float]], list[int]]:
        """The default wrapped scorer's stream (:class:`RobustZScore`'s)."""
        from agentwatch.detectors.robust_zscore import RobustZScore

        return RobustZScore.conformance_stream(rng)
