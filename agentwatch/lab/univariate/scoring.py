"""Alarms against labelled windows: recall, delay, false alarms and NAB's standard score.

What is implemented, after NAB's ``nab/sweeper.py`` (Lavin & Ahmad, *Evaluating real-time
anomaly detection algorithms: the Numenta Anomaly Benchmark*, 2015), standard profile
(``A_TP = 1``, ``A_FP = -0.11``, ``A_FN = -1``):

* the first ``min(floor(0.15 n), 750)`` points of a series are probationary: alarms there
  count for nothing;
* ``sigma(x) = 2 / (1 + exp(5 x)) - 1``, and ``-1`` for ``x > 3`` (NAB's scaled sigmoid);
* an alarm at index ``i`` inside a window ``[l, r]`` (``w = r - l + 1`` points) is worth
  ``A_TP * sigma(-(r - i + 1) / w) / sigma(-1)``: 1 at the window's first point, near 0 at
  its last. A window's score is its best (that is, earliest) alarm; a window without an
  alarm costs ``A_FN``;
* an alarm outside every window costs ``0.11 * sigma(|i - r_prev| / (w_prev - 1))`` after a
  window (little just after it, up to -0.11 far from it) and ``-0.11`` before the first;
* a series' raw score is the sum; the normalised score of a set of series is
  ``100 * (raw - null) / (perfect - null)`` over their sums, where the null detector never
  alarms (``-A_FN`` per window) and the perfect one alarms at each window's first point.

NAB picks each detector's threshold to maximise this score on the whole corpus; here the
alarms come from a false-alarm budget calibrated online (see
:mod:`~agentwatch.lab.univariate.candidates`), and the one constant, the budget, is chosen
on the calibration half only. Windows are located by timestamp (first point at or after
the start, last at or before the end), so a subset or a resampled copy still scores.

Detection time is reported two ways: the *delay* from a window's first point (what NAB's
sigmoid rewards) and the *lag* from its centre. NAB centres each window on the labelled
anomaly (its length is 10 % of the file over the number of anomalies), so the lag
approximates the time from the labelled event to the first alarm; a negative lag is an
alarm before the labelled point (often on the precursor the window was made to include).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentwatch.lab.univariate.corpus import Half, Series

__all__ = [
    "A_FN",
    "A_FP",
    "A_TP",
    "SeriesResult",
    "Summary",
    "probation_length",
    "scaled_sigmoid",
    "score_series",
    "summarize",
]

A_TP = 1.0
A_FP = -0.11
A_FN = -1.0


def scaled_sigmoid(x: float) -> float:
    """NAB's ``2 / (1 + exp(5 x)) - 1``, and ``-1`` beyond ``x = 3``."""
    if x > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_length(points: int) -> int:
    """NAB's probationary period: ``min(floor(0.15 * points), 0.15 * 5000)`` points."""
    return int(min(math.floor(0.15 * points), 0.15 * 5000))


class _Rates:
    """What a series' result and a pooled summary derive alike from their counts."""

    windows: int
    detected: int
    false_alarms: int
    scored_points: int
    days: float
    raw: float
    null: float
    perfect: float

    @property
    def recall(self) -> float | None:
        return self.detected / self.windows if self.windows else None

    @property
    def precision(self) -> float | None:
        """Detected windows over detected windows plus false alarms."""
        total = self.detected + self.false_alarms
        return self.detected / total if total else None

    @property
    def false_per_1000(self) -> float:
        return 1000.0 * self.false_alarms / self.scored_points if self.scored_points else 0.0

    @property
    def false_per_day(self) -> float:
        return self.false_alarms / self.days if self.days > 0 else 0.0

    @property
    def nab(self) -> float | None:
        """Normalised NAB score (``None`` without windows)."""
        span = self.perfect - self.null
        return 100.0 * (self.raw - self.null) / span if span else None


@dataclass(frozen=True)
class SeriesResult(_Rates):
    """How one scorer's alarms did on one series."""

    name: str
    half: Half
    points: int
    scored_points: int  # after the probationary period
    days: float  # span of the scored points
    windows: int
    detected: int
    delays_points: tuple[int, ...]  # per detected window: first alarm index - window start
    delays_s: tuple[float, ...]
    lags_points: tuple[int, ...]  # per detected window: first alarm index - window centre
    lags_s: tuple[float, ...]
    false_alarms: int
    alarms: int  # every alarm after the probationary period
    raw: float  # NAB standard-profile raw score
    null: float
    perfect: float

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "half": self.half,
            "points": self.points,
            "windows": self.windows,
            "detected": self.detected,
            "recall": self.recall,
            "delays_points": list(self.delays_points),
            "delays_s": list(self.delays_s),
            "lags_points": list(self.lags_points),
            "lags_s": list(self.lags_s),
            "false_alarms": self.false_alarms,
            "false_per_1000": round(self.false_per_1000, 3),
            "false_per_day": round(self.false_per_day, 3),
            "precision": self.precision,
            "nab_raw": round(self.raw, 4),
            "nab": None if self.nab is None else round(self.nab, 1),
        }


def _window_bounds(times: Sequence[float], window: tuple[float, float]) -> tuple[int, int] | None:
    left = bisect.bisect_left(times, window[0])
    right = bisect.bisect_right(times, window[1]) - 1
    return (left, right) if left <= right else None


def score_series(series: Series, alarms: Sequence[bool]) -> SeriesResult:
    """Score ``alarms`` (one flag per point of ``series``) against its windows."""
    times = series.timestamps
    n = len(times)
    if len(alarms) != n:
        raise ValueError(f"{series.name}: {len(alarms)} alarms for {n} points")
    probation = probation_length(n)
    bounds = sorted(b for w in series.windows if (b := _window_bounds(times, w)) is not None)
    max_tp = scaled_sigmoid(-1.0)
    # per point: the window it lies in (index into bounds) or None; the last window before it
    inside: list[int | None] = [None] * n
    for k, (left, right) in enumerate(bounds):
        for i in range(left, right + 1):
            inside[i] = k
    best: list[float | None] = [None] * len(bounds)
    first: list[int | None] = [None] * len(bounds)
    fp_score = 0.0
    false_alarms = alarms_total = 0
    prev: int | None = None  # index into bounds of the last window that ended before i
    k_next = 0
    for i in range(n):
        while k_next < len(bounds) and bounds[k_next][1] < i:
            prev = k_next
            k_next += 1
        if not alarms[i] or i < probation:
            continue
        alarms_total += 1
        here = inside[i]
        if here is not None:
            left, right = bounds[here]
            width = right - left + 1
            value = A_TP * scaled_sigmoid(-(right - i + 1) / width) / max_tp
            current = best[here]
            if current is None or value > current:
                best[here] = value
            if first[here] is None:
                first[here] = i
            continue
        false_alarms += 1
        if prev is None:
            fp_score += A_FP  # before any window: "very wrong"
        else:
            p_left, p_right = bounds[prev]
            p_width = p_right - p_left + 1
            position = abs(p_right - i) / max(p_width - 1, 1)
            fp_score += -A_FP * scaled_sigmoid(position)
    raw = fp_score + sum(A_FN if b is None else b for b in best)
    delays_points = tuple(f - bounds[k][0] for k, f in enumerate(first) if f is not None)
    delays_s = tuple(times[f] - times[bounds[k][0]] for k, f in enumerate(first) if f is not None)
    centres = [(left + right) // 2 for left, right in bounds]
    lags_points = tuple(f - centres[k] for k, f in enumerate(first) if f is not None)
    lags_s = tuple(times[f] - times[centres[k]] for k, f in enumerate(first) if f is not None)
    scored = max(n - probation, 0)
    days = (times[-1] - times[probation]) / 86_400.0 if scored > 1 else 0.0
    return SeriesResult(
        name=series.name,
        half=series.half,
        points=n,
        scored_points=scored,
        days=days,
        windows=len(bounds),
        detected=sum(f is not None for f in first),
        delays_points=delays_points,
        delays_s=delays_s,
        lags_points=lags_points,
        lags_s=lags_s,
        false_alarms=false_alarms,
        alarms=alarms_total,
        raw=raw,
        null=A_FN * len(bounds),
        perfect=A_TP * len(bounds),
    )


@dataclass(frozen=True)
class Summary(_Rates):
    """Pooled figures of several series' results (one scorer, one half or all)."""

    series: int
    windows: int
    detected: int
    false_alarms: int
    scored_points: int
    days: float
    raw: float
    null: float
    perfect: float
    delays_points: tuple[int, ...] = field(default=())
    delays_s: tuple[float, ...] = field(default=())
    lags_points: tuple[int, ...] = field(default=())
    lags_s: tuple[float, ...] = field(default=())

    @property
    def median_delay_points(self) -> float | None:
        return _median([float(d) for d in self.delays_points])

    @property
    def median_delay_s(self) -> float | None:
        return _median(list(self.delays_s))

    @property
    def median_lag_points(self) -> float | None:
        return _median([float(d) for d in self.lags_points])

    @property
    def median_lag_s(self) -> float | None:
        return _median(list(self.lags_s))

    def to_dict(self) -> dict[str, object]:
        return {
            "series": self.series,
            "windows": self.windows,
            "detected": self.detected,
            "recall": self.recall,
            "false_alarms": self.false_alarms,
            "false_per_1000": round(self.false_per_1000, 3),
            "false_per_day": round(self.false_per_day, 3),
            "precision": self.precision,
            "median_delay_points": self.median_delay_points,
            "median_delay_s": self.median_delay_s,
            "median_lag_points": self.median_lag_points,
            "median_lag_s": self.median_lag_s,
            "nab_raw": round(self.raw, 4),
            "nab": None if self.nab is None else round(self.nab, 1),
        }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def summarize(results: Sequence[SeriesResult]) -> Summary:
    """Pool ``results``: sums of counts and NAB scores, all delays."""
    return Summary(
        series=len(results),
        windows=sum(r.windows for r in results),
        detected=sum(r.detected for r in results),
        false_alarms=sum(r.false_alarms for r in results),
        scored_points=sum(r.scored_points for r in results),
        days=sum(r.days for r in results),
        raw=sum(r.raw for r in results),
        null=sum(r.null for r in results),
        perfect=sum(r.perfect for r in results),
        delays_points=tuple(d for r in results for d in r.delays_points),
        delays_s=tuple(d for r in results for d in r.delays_s),
        lags_points=tuple(d for r in results for d in r.lags_points),
        lags_s=tuple(d for r in results for d in r.lags_s),
    )
