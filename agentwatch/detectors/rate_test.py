"""``RateTest``: Poisson / binomial upper-tail tests of a count against its learned rate."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any, ClassVar

from agentwatch.detectors.base import Params, register_scorer

__all__ = ["RateTest", "binomial_tail_log10", "poisson_tail_log10"]

_LN10 = math.log(10.0)
_TINY = 1e-12
_MAX_TERMS = 100_000


def poisson_tail_log10(k: float, mu: float) -> float:
    """``log10 P(X >= k)`` for ``X ~ Poisson(mu)``, exact and without underflow.

    Above the mean the tail is summed upwards from the probability mass at ``k`` in log
    space, so ``k = 500, mu = 1`` gives a finite answer (about -1,000) where
    ``1 - cdf`` would be 0.

    Examples
    --------
    >>> round(poisson_tail_log10(3, 0.5), 3)  # P(X >= 3) = 0.01439
    -1.842
    >>> poisson_tail_log10(0, 2.0)
    0.0
    >>> round(poisson_tail_log10(500, 1.0))
    -1135
    """
    k = math.ceil(k)
    if k <= 0:
        return 0.0
    mu = max(mu, _TINY)
    if k <= mu:  # the tail holds at least ~half the mass: 1 - P(X < k) is accurate
        if k > 1000:  # normal approximation with continuity correction
            tail = 0.5 * math.erfc((k - 0.5 - mu) / math.sqrt(2.0 * mu))
            return math.log10(max(tail, _TINY))
        term = math.exp(-mu)
        below = 0.0
        for j in range(k):
            below += term
            term *= mu / (j + 1)
        return math.log10(max(1.0 - below, _TINY))
    log_pmf = k * math.log(mu) - mu - math.lgamma(k + 1.0)
    total = term = 1.0
    j = k
    for _ in range(_MAX_TERMS):
        j += 1
        term *= mu / j
        total += term
        if term < 1e-15 * total:
            break
    return (log_pmf + math.log(total)) / _LN10


def binomial_tail_log10(k: float, n: float, p: float) -> float:
    """``log10 P(X >= k)`` for ``X ~ Binomial(n, p)``, exact and without underflow.

    ``k`` above ``n`` is treated as ``n``; ``p`` is clamped to ``[1e-12, 1 - 1e-12]``.

    Examples
    --------
    >>> round(binomial_tail_log10(2, 10, 0.1), 3)  # 1 - 0.9**10 - 10 * 0.1 * 0.9**9
    -0.579
    >>> round(binomial_tail_log10(8, 10, 0.01), 1)  # 8 failures out of 10 at a 1 % rate
    -14.4
    """
    n = math.floor(n)
    k = min(math.ceil(k), n)
    if k <= 0:
        return 0.0
    p = min(max(p, _TINY), 1.0 - _TINY)
    q = 1.0 - p
    if k <= n * p:  # 1 - P(X < k), summed upwards from P(X = 0)
        term = math.exp(n * math.log(q))
        below = 0.0
        odds = p / q
        for j in range(k):
            below += term
            term *= (n - j) / (j + 1) * odds
        return math.log10(max(1.0 - below, _TINY))
    log_pmf = (
        math.lgamma(n + 1.0)
        - math.lgamma(k + 1.0)
        - math.lgamma(n - k + 1.0)
        + k * math.log(p)
        + (n - k) * math.log(q)
    )
    odds = p / q
    total = term = 1.0
    for j in range(k, min(n, k + _MAX_TERMS)):
        term *= (n - j) / (j + 1) * odds
        total += term
        if term < 1e-15 * total:
            break
    return (log_pmf + math.log(total)) / _LN10


@register_scorer("rate_test")
class RateTest(Params):
    """Is a count surprisingly high given the rate learned so far? ``-log10`` of a p-value.

    Each observation is one window's count (``x[feature]``). Without ``trials`` the count is
    tested against a Poisson law whose mean is the exponentially weighted average count per
    window; with ``trials`` (the key of the window's number of attempts) it is ``k`` failures
    out of ``n`` tested against a binomial law whose probability is the EW failure share.
    Both rates start from a prior worth ``prior_weight`` windows (Poisson) or trials
    (binomial), so a new stream needs evidence before it can look surprising.

    Parameters
    ----------
    feature
        Key of the count; ``None`` (default) takes the first value of ``x``.
    trials
        Key of the number of trials; ``None`` (default) selects the Poisson test.
    half_life
        Half-life of the learned rate, in observations (default 60).
    min_count
        Minimum evidence: counts below it score 0 however unlikely (default 5).
    prior_rate
        Prior count per window (Poisson) or failure probability (binomial); ``None``
        (default) means 1.0 and 0.05 respectively.
    prior_weight
        Weight of the prior, in windows (Poisson) or trials (binomial) (default 1.0 and
        20.0 when ``None``).

    Notes
    -----
    Catches bursts of events, errors or denials: a count far above what the stream's recent
    rate predicts, with a significance that grows with the evidence (ten events where one
    is expected scores about 7, two where one is expected about 0.6). Limits: the tests
    assume independent events, so over-dispersed counts (sessions, retries, clustered
    traffic) score higher than their true surprise; set the alerting threshold well above
    the nominal 2-3 (a p-value of 1e-6 or less) and keep ``min_count``. Rate changes slower
    than ``half_life`` windows are learned, not flagged (daily cycles are fine); a lasting
    step is flagged until it is learned (quickly, unless wrapped in
    :class:`~agentwatch.detectors.thresholded.Thresholded`). Only increases are scored.

    Examples
    --------
    >>> test = RateTest(min_count=3)
    >>> for count in [2, 1, 3, 2, 2, 1, 2, 3]:
    ...     test.learn_one({"errors": count})
    >>> test.score_one({"errors": 2})
    0.0
    >>> round(test.score_one({"errors": 12}), 1)
    6.1
    >>> fails = RateTest(trials="calls", prior_rate=0.01, prior_weight=100)
    >>> round(fails.score_one({"errors": 6, "calls": 10}), 1)  # 6 of 10 at a 1 % rate
    9.7
    """

    _supervised: ClassVar[bool] = False  # river's pipelines ask every step this

    def __init__(
        self,
        *,
        feature: str | None = None,
        trials: str | None = None,
        half_life: float = 60.0,
        min_count: int = 5,
        prior_rate: float | None = None,
        prior_weight: float | None = None,
    ) -> None:
        self.feature = feature
        self.trials = trials
        self.half_life = half_life
        self.min_count = min_count
        self.prior_rate = prior_rate
        self.prior_weight = prior_weight
        binomial = trials is not None
        self._rate0 = prior_rate if prior_rate is not None else (0.05 if binomial else 1.0)
        self._weight0 = prior_weight if prior_weight is not None else (20.0 if binomial else 1.0)
        self._keep = math.exp(-math.log(2.0) / half_life)
        self._state = self.new_state()

    # ------------------------------------------------------------------ river interface

    def learn_one(self, x: Mapping[str, float]) -> None:
        """Fold one window's count (and trials) into the learned rate."""
        self.learn_value(self._state, self._count(x), self._trials(x))

    def score_one(self, x: Mapping[str, float]) -> float:
        """``-log10`` of the upper-tail p-value of the count; 0 below ``min_count``."""
        return self.score_value(self._state, self._count(x), self._trials(x))

    # ------------------------------------------------------------------ low-level kernel

    @staticmethod
    def new_state() -> list[float]:
        """An empty per-stream state: ``[EW windows or trials, EW count]``."""
        return [0.0, 0.0]

    def expected(self, state: list[float]) -> float:
        """The learned mean count per window (Poisson) or failure probability (binomial)."""
        return (state[1] + self._rate0 * self._weight0) / (state[0] + self._weight0)

    def score_value(self, state: list[float], count: float, trials: float = 1.0) -> float:
        """The score of ``count`` (out of ``trials`` for the binomial test)."""
        if count < self.min_count:
            return 0.0
        rate = self.expected(state)
        if self.trials is None:
            return -poisson_tail_log10(count, rate)
        return -binomial_tail_log10(count, trials, rate)

    def learn_value(self, state: list[float], count: float, trials: float = 1.0) -> None:
        """Fold one window into ``state`` (in place)."""
        keep = self._keep
        state[0] = keep * state[0] + (1.0 if self.trials is None else trials)
        state[1] = keep * state[1] + count

    def learn_zeros(self, state: list[float], windows: int) -> None:
        """Fold ``windows`` observations of count 0 (and 1 trial each) in one step.

        The same result as that many :meth:`learn_value` calls, for callers that count
        the uneventful windows and settle them only when something happens.
        """
        if windows <= 0:
            return
        keep = self._keep**windows
        state[0] = keep * state[0] + (1.0 - keep) / (1.0 - self._keep)
        state[1] *= keep

    # ------------------------------------------------------------------ state and params

    def to_state(self) -> dict[str, float]:
        """The learned state as a JSON-able dict."""
        return {"weight": self._state[0], "count": self._state[1]}

    @classmethod
    def from_state(cls, state: Mapping[str, float], **params: Any) -> RateTest:
        """A scorer with ``params`` and the learned ``state`` of :meth:`to_state`."""
        scorer = cls(**params)
        scorer._state = [float(state["weight"]), float(state["count"])]
        return scorer

    def _count(self, x: Mapping[str, float]) -> float:
        if self.feature is None:
            return float(next(iter(x.values())))
        return float(x[self.feature])

    def _trials(self, x: Mapping[str, float]) -> float:
        return 1.0 if self.trials is None else float(x[self.trials])

    # ------------------------------------------------------------------ conformance

    @classmethod
    def conformance_stream(cls, rng: random.Random) -> tuple[list[dict[str, float]], list[int]]:
        """Per-minute event counts of a busy service with planted bursts (labels 1).

        Two days of minutes at 20 events/min with a daily cycle (+-40 %), over-dispersion
        (the rate of each minute is gamma-distributed, CV 0.2), a lasting +50 % step
        half-way (its first 5 minutes count as anomalies) and 1 % planted bursts of 3-6 x
        the rate.
        """
        xs: list[dict[str, float]] = []
        labels: list[int] = []
        n = 2 * 1440
        for i in range(n):
            rate = 20.0 * (1.0 + 0.4 * math.sin(2.0 * math.pi * i / 1440.0))
            rate *= 1.5 if i >= n // 2 else 1.0
            rate *= rng.gammavariate(25.0, 1.0 / 25.0)
            label = 1 if n // 2 <= i < n // 2 + 5 else 0
            if i > 120 and rng.random() < 0.01:
                rate *= rng.uniform(3.0, 6.0)
                label = 1
            xs.append({"events": float(_poisson(rng, rate))})
            labels.append(label)
        return xs, labels


def _poisson(rng: random.Random, mu: float) -> int:
    """A Poisson draw (Knuth's method in chunks; fine for the moderate means used here)."""
    count = 0
    while mu > 0.0:
        step = min(mu, 30.0)
        mu -= step
        limit = math.exp(-step)
        prod = rng.random()
        while prod > limit:
            count += 1
            prod *= rng.random()
    return count
