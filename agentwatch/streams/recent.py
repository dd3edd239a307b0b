"""Each agent's last events, kept as the evidence anomalies point at.

An :class:`~agentwatch.schemas.Anomaly` names its evidence by event id; :class:`RecentEvents`
keeps in memory, per agent, the raw JSON of its last ``max_events`` events within
``max_bytes`` (the oldest go first), so ``GET /incidents/{id}`` and ``GET /anomalies`` can show
the events themselves. When a detector raises an anomaly, the ingest stage copies the
evidence events it names out of this store into the ``evidence`` table
(:func:`capture`; bounded per agent), so an anomaly's evidence survives a restart and a
rebalance without writing every event to a changelog. An evidence id found in neither is
reported as no longer held.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson

__all__ = [
    "MAX_CAPTURED_ANOMALIES",
    "MAX_CAPTURED_BYTES",
    "RecentEvents",
    "capture",
    "captured_events",
]

MAX_CAPTURED_ANOMALIES = 50
MAX_CAPTURED_BYTES = 256 * 1024


class RecentEvents:
    """Per agent, the raw JSON of its last events, bounded in count and bytes.

    Parameters
    ----------
    max_events
        Events kept per agent (0 keeps none).
    max_bytes
        Bytes of raw JSON kept per agent (a single larger event is not kept).

    Examples
    --------
    >>> recent = RecentEvents(max_events=2, max_bytes=1024)
    >>> for i in range(3):
    ...     recent.add("a1", f'{{"event_id":"e{i}"}}'.encode(), f"e{i}")
    >>> recent.events("a1")
    [b'{"event_id":"e1"}', b'{"event_id":"e2"}']
    >>> recent.find("a1", ["e0", "e2"])
    {'e2': b'{"event_id":"e2"}'}
    """

    def __init__(self, max_events: int = 100, max_bytes: int = 64 * 1024) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: dict[str, deque[tuple[str, bytes]]] = {}
        self._bytes: dict[str, int] = {}

    def add(self, agent_id: str, raw: bytes, event_id: str = "") -> None:
        """Keep ``raw`` (event ``event_id``) as ``agent_id``'s newest event, dropping the oldest
        beyond the bounds."""
        if self.max_events <= 0 or len(raw) > self.max_bytes:
            return
        held = self._events.get(agent_id)
        if held is None:
            held = self._events[agent_id] = deque()
            self._bytes[agent_id] = 0
        held.append((event_id, raw))
        size = self._bytes[agent_id] + len(raw)
        while len(held) > self.max_events or size > self.max_bytes:
            size -= len(held.popleft()[1])
        self._bytes[agent_id] = size

    def events(self, agent_id: str) -> list[bytes]:
        """``agent_id``'s events held, oldest first."""
        return [raw for _, raw in self._events.get(agent_id, ())]

    def find(self, agent_id: str, event_ids: Iterable[str]) -> dict[str, bytes]:
        """The held events of ``agent_id`` with these ids (newest copy of each)."""
        wanted = set(event_ids)
        return {eid: raw for eid, raw in self._events.get(agent_id, ()) if eid in wanted}

    def holds(self, agent_id: str) -> bool:
        return agent_id in self._events

    def evict(self, agents: Iterable[str]) -> None:
        """Forget agents (their partition moved to another worker)."""
        for agent_id in agents:
            self._events.pop(agent_id, None)
            self._bytes.pop(agent_id, None)


def capture(stored: bytes | None, anomaly_id: str, events: Iterable[bytes]) -> tuple[bytes, bool]:
    """The ``evidence`` table value of an agent with ``anomaly_id``'s evidence events added
    (the oldest anomalies' dropped beyond :data:`MAX_CAPTURED_ANOMALIES` or
    :data:`MAX_CAPTURED_BYTES`); and whether it changed.

    Examples
    --------
    >>> value, changed = capture(None, "an-1", [b'{"event_id":"e1"}'])
    >>> captured_events(value)
    [b'{"event_id":"e1"}']
    >>> capture(value, "an-1", [b'{"event_id":"e1"}'])[1]
    False
    """
    from agentwatch.streams.history import append_bounded

    items: list[dict[str, Any]] = [] if stored is None else list(orjson.loads(stored))
    record = {"anomaly_id": anomaly_id, "events": [orjson.loads(raw) for raw in events]}
    items, added = append_bounded(
        items,
        record,
        key="anomaly_id",
        max_items=MAX_CAPTURED_ANOMALIES,
        max_bytes=MAX_CAPTURED_BYTES,
    )
    return orjson.dumps(items), added


def captured_events(stored: bytes | None) -> list[bytes]:
    """Every event an ``evidence`` table value holds (raw JSON, oldest anomaly first)."""
    if stored is None:
        return []
    return [orjson.dumps(e) for item in orjson.loads(stored) for e in item["events"]]
