"""Where the benchmark's latency tail comes from: commits' snapshot writes and full collections.

``agentwatch bench`` times every event of its latency phase. Two things of the worker hold its
event loop long enough to show in the p99 of those times: a commit writing its snapshot (every
changed agent's state, ~1,000 agents every few seconds; see
:mod:`agentwatch.streams.stage`), and a full garbage collection. This module turns what the
benchmark records while the latency phase runs into figures:

* :func:`snapshot_figures`: how many snapshots were written, their median wall time and size;
* :func:`tail_near_snapshots`: of the slowest events (those at or above the p99), the share
  folded while a snapshot was being written or within ``after_s`` of its end (the backlog it
  left drains then); with ``quantile=0``, the same share of all events, which is what the
  slowest would show if snapshots had nothing to do with them;
* :class:`FullCollections`: the full (generation 2) collections, counted and timed through
  :data:`gc.callbacks` while it is active.

Examples
--------
>>> samples = [(float(t), 50.0) for t in range(100)] + [(41.0, 400.0), (42.0, 390.0)]
>>> tail_near_snapshots(samples, [(40.5, 41.5, 900)], quantile=0.99)
1.0
>>> snapshot_figures([(1.0, 1.8, 1000), (4.0, 4.6, 990)])
{'snapshots': 2, 'snapshot_median_s': 0.7, 'snapshot_agents_median': 995.0}
"""

from __future__ import annotations

import bisect
import gc
import math
import statistics
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

__all__ = ["FullCollections", "snapshot_figures", "tail_near_snapshots"]

#: One snapshot write: (started, ended) on the monotonic clock, and how many agents it wrote.
Window = tuple[float, float, int]


def snapshot_figures(windows: Sequence[Window]) -> dict[str, Any]:
    """Count, median wall time (s) and median agents of the snapshot writes ``windows``."""
    if not windows:
        return {"snapshots": 0, "snapshot_median_s": None, "snapshot_agents_median": None}
    return {
        "snapshots": len(windows),
        "snapshot_median_s": round(statistics.median(end - start for start, end, _ in windows), 3),
        "snapshot_agents_median": float(statistics.median(n for _, _, n in windows)),
    }


def tail_near_snapshots(
    samples: Sequence[tuple[float, float]],
    windows: Sequence[Window],
    *,
    quantile: float = 0.99,
    after_s: float = 1.0,
) -> float | None:
    """The share of the slowest events, ``(folded at, latency)``, folded during a snapshot
    write or within ``after_s`` of its end; ``None`` without samples.

    The slowest are the ``1 - quantile`` of the samples with the highest latencies (at least
    one; ties in the order given), so ``quantile=0`` takes them all.
    """
    if not samples:
        return None
    count = max(1, math.ceil(round((1.0 - quantile) * len(samples), 9)))
    ranked = sorted(samples, key=lambda sample: sample[1], reverse=True)
    slow = [at for at, _ in ranked[:count]]
    spans = sorted((start, end + after_s) for start, end, _ in windows)
    starts = [start for start, _ in spans]
    near = 0
    for at in slow:
        i = bisect.bisect_right(starts, at) - 1  # the last span starting at or before it
        if i >= 0 and at <= spans[i][1]:
            near += 1
    return round(near / len(slow), 3)


class FullCollections:
    """Counts and times full garbage collections while active (a context manager).

    Examples
    --------
    >>> with FullCollections() as full:
    ...     _ = gc.collect()
    >>> full.count >= 1 and full.max_s >= 0.0
    True
    """

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0
        self._started: float | None = None

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            took = time.perf_counter() - self._started
            self._started = None
            self.count += 1
            self.total_s += took
            self.max_s = max(self.max_s, took)

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        gc.callbacks.remove(self._callback)
