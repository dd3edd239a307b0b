"""``BudgetThreshold``: a threshold set by a false-alarm budget, calibrated on the scores seen.

A detector that compares a score with a constant is tuned to the fleet it was tuned on. This
wrapper replaces the constant with a *budget*: the expected number of false alarms per
agent-day the operator accepts. It learns the upper tail of the detector's own score
distribution (scores it did not flag) and places the threshold where that tail predicts the
budget: per check, the false-alarm probability is ``p = budget / checks_per_day``.

The tail above a fixed ``floor`` (a score below which nothing is ever interesting) is modelled
as exponential, the peaks-over-threshold estimate of extreme value theory with shape 0
(Siffer et al., *Anomaly detection in streams with extreme value theory*, KDD 2017)::

    threshold = floor + mean_excess * ln(share_over_floor / p)

Everything it keeps is a count, a sum or a time (six numbers), and two states add up
(:meth:`merged`): a fleet's summary is the sum of its agents' (or of several workers' partial
sums), and :meth:`shrunk` judges a young agent by its fleet's tail until it has evidence of its
own.
"""

from __future__ import annotations

import math

__all__ = ["BudgetThreshold", "compact_state"]

_SECONDS_PER_DAY = 86_400.0
_COLD_CHECKS_PER_DAY = 1_440.0  # before any check: assume one a minute (a cautious threshold)


class BudgetThreshold:
    """Online threshold for one score stream, from a false-alarm budget.

    Parameters
    ----------
    budget_per_day
        Expected false alarms per day of this stream (per agent-day for a per-agent
        stream). Default 0.05 (one in 20 agent-days).
    floor
        Scores at or below it never fire and contribute no tail evidence. Default 0.
    prior_checks, prior_share, prior_excess
        A weak prior (pseudo-observations) that keeps a cold stream conservative: as if
        ``prior_checks`` checks had been seen, ``prior_share`` of them above ``floor`` by
        ``prior_excess`` on average. Defaults 20, 0.05 and 1.0.
    half_life
        Checks after which old evidence weighs half (default 5,000): the threshold follows
        a lasting change of the score distribution, slowly.
    min_span_s
        The check rate is measured over at least this much event time (default 3,600 s), so
        the first minutes of a busy stream do not promise an absurd rate.

    Examples
    --------
    >>> import random
    >>> rng = random.Random(1)
    >>> guard = BudgetThreshold(budget_per_day=0.1, floor=0.0)
    >>> for i in range(5000):  # one check a minute, exponential scores of mean 1
    ...     guard.learn_one(rng.expovariate(1.0), ts=60.0 * i)
    >>> round(guard.threshold(), 1)  # ~ ln(1440 / 0.1) = 9.6 for this tail
    9.7
    >>> guard.is_anomaly(12.0), guard.is_anomaly(4.0)
    (True, False)
    """

    def __init__(
        self,
        budget_per_day: float = 0.05,
        floor: float = 0.0,
        *,
        prior_checks: float = 20.0,
        prior_share: float = 0.05,
        prior_excess: float = 1.0,
        half_life: float = 5_000.0,
        min_span_s: float = 3_600.0,
    ) -> None:
        self.budget_per_day = budget_per_day
        self.floor = floor
        self.prior_checks = prior_checks
        self.prior_share = prior_share
        self.prior_excess = prior_excess
        self.half_life = half_life
        self.min_span_s = min_span_s
        self.checks = 0.0
        self.seen = 0.0
        self.over = 0.0
        self.excess = 0.0
        self.first_ts: float | None = None
        self.last_ts: float | None = None

    # -- learning ----------------------------------------------------------------------------
    def learn_one(self, score: float, ts: float) -> None:
        """Fold in one check's score (call it only for checks that were not flagged)."""
        keep = 0.5 ** (1.0 / self.half_life)
        self.checks = self.checks * keep + 1.0
        self.seen += 1.0
        self.over *= keep
        self.excess *= keep
        if score > self.floor:
            self.over += 1.0
            self.excess += score - self.floor
        if self.first_ts is None:
            self.first_ts = ts
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)

    # -- judging -----------------------------------------------------------------------------
    def checks_per_day(self) -> float:
        """Checks per day of event time, measured over at least ``min_span_s``."""
        if self.first_ts is None or self.last_ts is None:
            return _COLD_CHECKS_PER_DAY
        span = max(self.last_ts - self.first_ts, self.min_span_s)
        return max(self.seen * _SECONDS_PER_DAY / span, 1.0)

    def threshold(self, checks_per_day: float | None = None) -> float:
        """The score at which the modelled tail predicts ``budget_per_day`` alarms a day."""
        rate = self.checks_per_day() if checks_per_day is None else max(checks_per_day, 1.0)
        p = min(self.budget_per_day / rate, 0.5)
        n = self.checks + self.prior_checks
        over = self.over + self.prior_checks * self.prior_share
        excess = self.excess + self.prior_checks * self.prior_share * self.prior_excess
        share = over / n
        mean_excess = excess / over
        return self.floor + mean_excess * max(math.log(share / p), 0.0)

    def is_anomaly(self, score: float, checks_per_day: float | None = None) -> bool:
        """Whether ``score`` is above the floor and at or above :meth:`threshold`."""
        return score > self.floor and score >= self.threshold(checks_per_day)

    # -- pooling -----------------------------------------------------------------------------
    def merged(self, other: BudgetThreshold) -> BudgetThreshold:
        """A new threshold holding both streams' evidence (fleet summaries, workers)."""
        out = self.clone()
        out.checks = self.checks + other.checks
        out.seen = self.seen + other.seen
        out.over = self.over + other.over
        out.excess = self.excess + other.excess
        firsts = [t for t in (self.first_ts, other.first_ts) if t is not None]
        lasts = [t for t in (self.last_ts, other.last_ts) if t is not None]
        out.first_ts = min(firsts) if firsts else None
        out.last_ts = max(lasts) if lasts else None
        return out

    def shrunk(self, fleet: BudgetThreshold, strength: float = 200.0) -> BudgetThreshold:
        """This stream's evidence plus ``strength`` checks' worth of the fleet's tail shape.

        A young agent is judged mostly by its fleet; after many more than ``strength``
        checks, by itself. A fleet that has seen fewer than ``strength`` checks adds what
        it has, no more. The check rate stays this stream's own.
        """
        out = self.clone()
        if fleet.checks > 0:
            # at most ``strength`` checks' worth: a fleet that has seen only a few checks
            # weighs only as much as it has seen
            weight = min(strength / fleet.checks, 1.0)
            out.checks = self.checks + fleet.checks * weight
            out.seen = self.seen
            out.over = self.over + fleet.over * weight
            out.excess = self.excess + fleet.excess * weight
        else:
            out.checks, out.over, out.excess = self.checks, self.over, self.excess
            out.seen = self.seen
        out.first_ts, out.last_ts = self.first_ts, self.last_ts
        return out

    # -- kernels on a state list: one instance holds the parameters, each stream six numbers --
    @staticmethod
    def new_state() -> list[float | None]:
        """An empty :meth:`to_state` list, for :meth:`learn_state` and :meth:`state_threshold`."""
        return [0.0, 0.0, 0.0, 0.0, None, None]

    def learn_state(self, state: list[float | None], score: float, ts: float) -> None:
        """:meth:`learn_one` on a :meth:`to_state` list, in place (no object per stream).

        A detector that keeps one threshold per agent uses one instance for the parameters
        and a JSON-able list per agent in its state; the results are those of
        :meth:`learn_one` and :meth:`threshold` on an object holding that state.
        """
        keep = 0.5 ** (1.0 / self.half_life)
        state[0] = float(state[0] or 0.0) * keep + 1.0
        state[1] = float(state[1] or 0.0) + 1.0
        over = float(state[2] or 0.0) * keep
        excess = float(state[3] or 0.0) * keep
        if score > self.floor:
            over += 1.0
            excess += score - self.floor
        state[2] = over
        state[3] = excess
        if state[4] is None:
            state[4] = ts
        last = state[5]
        if last is None or ts > last:
            state[5] = ts

    def state_threshold(
        self,
        state: list[float | None],
        fleet: list[float | None] | None = None,
        strength: float = 200.0,
    ) -> float:
        """:meth:`threshold` of a :meth:`to_state` list; with ``fleet`` (another such list),
        that of ``shrunk(fleet, strength)``: a young stream is judged by its fleet's tail."""
        checks = float(state[0] or 0.0)
        over = float(state[2] or 0.0)
        excess = float(state[3] or 0.0)
        if fleet is not None:
            fleet_checks = float(fleet[0] or 0.0)
            if fleet_checks > 0.0:
                weight = min(strength / fleet_checks, 1.0)
                checks += fleet_checks * weight
                over += float(fleet[2] or 0.0) * weight
                excess += float(fleet[3] or 0.0) * weight
        first, last = state[4], state[5]
        if first is None or last is None:
            rate = _COLD_CHECKS_PER_DAY
        else:
            span = max(last - first, self.min_span_s)
            rate = max(float(state[1] or 0.0) * _SECONDS_PER_DAY / span, 1.0)
        p = min(self.budget_per_day / rate, 0.5)
        prior_over = self.prior_checks * self.prior_share
        n = checks + self.prior_checks
        over += prior_over
        excess += prior_over * self.prior_excess
        return self.floor + excess / over * max(math.log(over / n / p), 0.0)

    # -- state -------------------------------------------------------------------------------
    def to_state(self) -> list[float | None]:
        """Compact, JSON-ready state: ``[checks, seen, over, excess, first_ts, last_ts]``."""
        return [self.checks, self.seen, self.over, self.excess, self.first_ts, self.last_ts]

    def load_state(self, state: list[float | None]) -> BudgetThreshold:
        """Restore :meth:`to_state` output into this object; returns it."""
        checks, seen, over, excess, first_ts, last_ts = state
        self.checks = float(checks or 0.0)
        self.seen = float(seen or 0.0)
        self.over = float(over or 0.0)
        self.excess = float(excess or 0.0)
        self.first_ts = first_ts
        self.last_ts = last_ts
        return self

    def params(self) -> dict[str, float]:
        """The constructor parameters."""
        return {
            "budget_per_day": self.budget_per_day,
            "floor": self.floor,
            "prior_checks": self.prior_checks,
            "prior_share": self.prior_share,
            "prior_excess": self.prior_excess,
            "half_life": self.half_life,
            "min_span_s": self.min_span_s,
        }

    def clone(self) -> BudgetThreshold:
        """A fresh threshold with the same parameters and no evidence."""
        return type(self)(**self.params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"


def compact_state(threshold: BudgetThreshold) -> list[float | None]:
    """:meth:`BudgetThreshold.to_state`, rounded for a small persisted state.

    Counts and sums keep three decimals and times a tenth of a second: a JSON state of about
    60 bytes instead of 110, with thresholds that differ in the fourth digit at most.

    Examples
    --------
    >>> guard = BudgetThreshold()
    >>> for i in range(100):
    ...     guard.learn_one(i % 7 / 3.0, ts=1_767_000_000.123456 + 60.0 * i)
    >>> state = compact_state(guard)
    >>> state[4], state[5]
    (1767000000.1, 1767005940.1)
    >>> round(BudgetThreshold().load_state(state).threshold() - guard.threshold(), 3)
    0.0
    """
    checks, seen, over, excess, first_ts, last_ts = threshold.to_state()
    return [
        round(float(checks or 0.0), 3),
        round(float(seen or 0.0), 3),
        round(float(over or 0.0), 3),
        round(float(excess or 0.0), 3),
        None if first_ts is None else round(first_ts, 1),
        None if last_ts is None else round(last_ts, 1),
    ]
