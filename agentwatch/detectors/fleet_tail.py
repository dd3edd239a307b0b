"""``FleetTail``: a fleet's pooled :class:`BudgetThreshold` tail, summed over workers.

A detector that pools the excursions (or check scores) of a fleet's agents into one tail
keeps it as a ``BudgetThreshold`` state list ``[checks, seen, over, excess, first_ts,
last_ts]`` whose counts decay by ``keep`` per check *of the fleet*. When the fleet's agents
are spread over several workers, each worker sees only its own agents' checks; summing the
workers' lists would decay each part by its own worker's checks only. Here every part decays
by the fleet's *global* check count instead: the part a worker learned (``local``) is
decayed, at each of its checks, by the checks the whole fleet made since its previous one
(its own and, from the partials it absorbed, the other workers'), so the sum of the parts is
the tail one worker watching the whole fleet would hold, to float rounding, when the
partials are exchanged after every event, and close to it with an exchange interval.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FleetTail"]


class FleetTail:
    """One fleet's pooled tail: this worker's part, the other workers' parts, their sum.

    Parameters
    ----------
    keep
        The decay per check of the fleet (``0.5 ** (1 / half_life)``).
    floor
        Scores at or below it add no tail evidence (the threshold's ``floor``).

    Examples
    --------
    >>> one, a, b = FleetTail(0.9), FleetTail(0.9), FleetTail(0.9)
    >>> for i, score in enumerate([3.0, 0.0, 2.0, 5.0, 1.0]):
    ...     one.learn(score, ts=float(i))
    ...     worker = a if i % 2 else b   # two workers, each seeing its agents' checks
    ...     worker.learn(score, ts=float(i))
    ...     (b if worker is a else a).absorb([worker.partial()])
    >>> [round(x, 9) for x in one.view()] == [round(x, 9) for x in a.view()]
    True
    >>> one.view()[1], a.seen()
    (5.0, 5.0)
    """

    __slots__ = ("_view", "floor", "keep", "local", "local_at", "remote", "remote_seen")

    def __init__(self, keep: float, floor: float = 0.0) -> None:
        self.keep = keep
        self.floor = floor
        self.local: list[Any] = [0.0, 0.0, 0.0, 0.0, None, None]
        self.local_at = 0.0  # the fleet's check count at this worker's last check
        self.remote: list[tuple[list[Any], float]] = []  # (part, its fleet check count)
        self.remote_seen = 0.0
        self._view: list[Any] | None = None

    def seen(self) -> float:
        """Checks the fleet made, on every worker (undecayed)."""
        return float(self.local[1]) + self.remote_seen

    def learn(self, score: float, ts: float) -> None:
        """Fold in one check of one of this worker's agents (``BudgetThreshold.learn_state``)."""
        local = self.local
        at = self.seen() + 1.0  # this check's number among the fleet's
        gap = at - self.local_at
        keep = self.keep if gap == 1.0 else self.keep**gap
        local[0] = local[0] * keep + 1.0
        local[1] += 1.0
        if score > self.floor:
            local[2] = local[2] * keep + 1.0
            local[3] = local[3] * keep + (score - self.floor)
        else:
            local[2] *= keep
            local[3] *= keep
        if local[4] is None:
            local[4] = ts
        if local[5] is None or ts > local[5]:
            local[5] = ts
        self.local_at = at
        self._view = None

    def view(self) -> list[Any]:
        """The fleet's tail as one state list (what ``state_threshold`` takes as ``fleet``)."""
        view = self._view
        if view is not None:
            return view
        local = self.local
        if not self.remote:
            view = self._view = local
            return view
        now = self.seen()
        keep = self.keep
        parts = [(local, self.local_at), *self.remote]
        checks = over = excess = seen = 0.0
        first: float | None = None
        last: float | None = None
        for part, at in parts:
            decay = keep ** (now - at)
            checks += part[0] * decay
            seen += part[1]
            over += part[2] * decay
            excess += part[3] * decay
            if part[4] is not None and (first is None or part[4] < first):
                first = part[4]
            if part[5] is not None and (last is None or part[5] > last):
                last = part[5]
        view = self._view = [checks, seen, over, excess, first, last]
        return view

    def partial(self) -> list[Any]:
        """This worker's part, JSON-able: its state list and the fleet's count it is at."""
        return [*self.local, self.local_at]

    def absorb(self, partials: list[list[Any]]) -> None:
        """Replace the other workers' parts by ``partials`` (their :meth:`partial` lists)."""
        self.remote = [(list(p[:6]), float(p[6])) for p in partials]
        self.remote_seen = sum(float(p[1]) for p in partials)
        self._view = None

    def restore(self, partial: list[Any]) -> None:
        """Start this worker's part from its own earlier :meth:`partial` (after a restart)."""
        self.local = list(partial[:6])
        self.local_at = float(partial[6])
        self._view = None
