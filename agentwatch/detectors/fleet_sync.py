"""``FleetSync``: the latest fleet summaries each other worker published, and their expiry.

Every worker publishes, per fleet, the partial summaries of its fleet-aware detectors (what
its own agents contributed; :meth:`~agentwatch.detectors.engine.Engine.fleet_partials`) and
absorbs everyone else's. This class is the bookkeeping in between, free of Kafka and of
clocks: it keeps the newest partial per fleet and worker, forgets a worker's partial
``ttl_s`` seconds after it last published (a worker that left), and hands the engine the
other workers' partials of one fleet to merge.
"""

from __future__ import annotations

from typing import Any

__all__ = ["FleetSync"]

Partials = dict[str, Any]  # alert -> one detector's partial summary


class FleetSync:
    """The other workers' newest partials, per fleet.

    Parameters
    ----------
    worker_id
        This worker's id: its own partials (read back from the topic) are not "others".
    ttl_s
        A worker's partial of a fleet expires this long after it was published (default 60).

    Examples
    --------
    >>> sync = FleetSync("w1", ttl_s=60.0)
    >>> sync.put("w2", "support", {"cost": {"n": 3}}, now=100.0)
    True
    >>> sync.put("w1", "support", {"cost": {"n": 9}}, now=100.0)  # our own: ignored
    False
    >>> sync.others("support")
    [{'cost': {'n': 3}}]
    >>> sync.expire(now=161.0)
    ['support']
    >>> sync.others("support")
    []
    """

    def __init__(self, worker_id: str, ttl_s: float = 60.0) -> None:
        self.worker_id = worker_id
        self.ttl_s = ttl_s
        self._latest: dict[str, dict[str, tuple[float, Partials]]] = {}

    def put(self, worker: str, fleet: str, partials: Partials, now: float) -> bool:
        """Keep ``worker``'s newest partials of ``fleet``, published at ``now``.

        Returns whether the other workers' view of the fleet changed (not for our own id).
        """
        if worker == self.worker_id:
            return False
        self._latest.setdefault(fleet, {})[worker] = (now, partials)
        return True

    def drop(self, worker: str, fleet: str) -> bool:
        """Forget ``worker``'s partials of ``fleet`` (a tombstone); whether it had any."""
        by_worker = self._latest.get(fleet)
        if by_worker is None or by_worker.pop(worker, None) is None:
            return False
        if not by_worker:
            del self._latest[fleet]
        return True

    def expire(self, now: float) -> list[str]:
        """Forget the partials published more than ``ttl_s`` before ``now``; the fleets
        whose view changed."""
        changed = []
        horizon = now - self.ttl_s
        for fleet, by_worker in list(self._latest.items()):
            stale = [w for w, (at, _) in by_worker.items() if at < horizon]
            for worker in stale:
                del by_worker[worker]
            if stale:
                changed.append(fleet)
            if not by_worker:
                del self._latest[fleet]
        return changed

    def others(self, fleet: str) -> list[Partials]:
        """The other workers' newest partials of ``fleet`` (in worker id order)."""
        by_worker = self._latest.get(fleet)
        if not by_worker:
            return []
        return [by_worker[w][1] for w in sorted(by_worker)]

    def workers(self, fleet: str) -> list[str]:
        """The other workers that have a live partial of ``fleet``."""
        return sorted(self._latest.get(fleet, ()))

    def published(self, fleet: str) -> dict[str, float]:
        """The other workers with a live partial of ``fleet``, and when each published it."""
        return {w: at for w, (at, _) in sorted(self._latest.get(fleet, {}).items())}

    def fleets(self) -> list[str]:
        """The fleets some other worker has a live partial of."""
        return sorted(self._latest)
