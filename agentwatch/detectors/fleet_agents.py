"""``FleetAgents``: the agents of a fleet, on this worker and on the others, counted once.

Fleet-aware detectors count their fleet's agents (a typical agent's rate, the share of a
fleet that fails at once, whether a fleet is big enough to judge by). An agent belongs to one
worker at a time, but after a rebalance the worker that had it still counts it in what it
publishes; a union of the workers' agent ids counts it once where a sum of counts would
count it twice.
"""

from __future__ import annotations

__all__ = ["FleetAgents"]


class FleetAgents:
    """This worker's agents of one fleet, and the other workers' (as last absorbed).

    Examples
    --------
    >>> agents = FleetAgents()
    >>> agents.add("a1"); agents.add("a2")
    >>> agents.absorb([["a2", "b1"], ["b2"]])  # a2 moved here from another worker
    >>> len(agents), sorted(agents.partial())
    (4, ['a1', 'a2'])
    >>> agents.add("b1")  # and b1 too, since
    >>> len(agents)
    4
    """

    __slots__ = ("_extra", "local", "remote")

    def __init__(self) -> None:
        self.local: set[str] = set()
        self.remote: set[str] = set()
        self._extra = 0  # the other workers' agents that are not this worker's

    def __len__(self) -> int:
        return len(self.local) + self._extra

    def __contains__(self, agent: object) -> bool:
        return agent in self.local

    def add(self, agent: str) -> None:
        """``agent`` is this worker's (first seen here)."""
        local = self.local
        if agent not in local:
            local.add(agent)
            if agent in self.remote:
                self._extra -= 1

    def partial(self) -> list[str]:
        """This worker's agents, JSON-able."""
        return sorted(self.local)

    def absorb(self, partials: list[list[str]]) -> None:
        """Replace the other workers' agents by the union of ``partials``."""
        remote: set[str] = set()
        for agents in partials:
            remote.update(agents)
        self.remote = remote
        self._extra = len(remote - self.local)

    def restore(self, partial: list[str]) -> None:
        """This worker's agents from before a restart."""
        self.local = set(partial)
        self._extra = len(self.remote - self.local)
