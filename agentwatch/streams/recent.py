"""Each agent's last events, kept as the evidence anomalies point at.

An :class:`~agentwatch.schemas.Anomaly` names its evidence by event id; :class:`RecentEvents`
keeps, per agent, the raw JSON of its last ``max_events`` events within ``max_bytes`` (the
oldest go first), so ``GET /incidents/{id}`` and ``GET /anomalies`` can show the events
themselves. An evidence id older than that is reported as no longer held. The ingest stage
writes each changed agent's events to the ``recent_events`` table with its baseline (one
changelog record per agent per commit), so they survive a restart and follow a rebalance.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable

__all__ = ["RecentEvents", "decode_events", "encode_events"]

_LEN = struct.Struct(">I")


def encode_events(events: Iterable[bytes]) -> bytes:
    """Length-prefixed raw events (the table value).

    >>> decode_events(encode_events([b'{"a":1}', b"{}"]))
    [b'{"a":1}', b'{}']
    """
    return b"".join(_LEN.pack(len(raw)) + raw for raw in events)


def decode_events(value: bytes) -> list[bytes]:
    """Inverse of :func:`encode_events`; a truncated tail is ignored."""
    out, at = [], 0
    while at + _LEN.size <= len(value):
        (size,) = _LEN.unpack_from(value, at)
        at += _LEN.size
        if at + size > len(value):
            break
        out.append(value[at : at + size])
        at += size
    return out


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
    ...     recent.add("a1", f'{{"event_id":"e{i}"}}'.encode())
    >>> recent.events("a1")
    [b'{"event_id":"e1"}', b'{"event_id":"e2"}']
    """

    def __init__(self, max_events: int = 100, max_bytes: int = 64 * 1024) -> None:
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._events: dict[str, deque[bytes]] = {}
        self._bytes: dict[str, int] = {}

    def add(self, agent_id: str, raw: bytes) -> None:
        """Keep ``raw`` as ``agent_id``'s newest event, dropping the oldest beyond the bounds."""
        if self.max_events <= 0 or len(raw) > self.max_bytes:
            return
        held = self._events.get(agent_id)
        if held is None:
            held = self._events[agent_id] = deque()
            self._bytes[agent_id] = 0
        held.append(raw)
        size = self._bytes[agent_id] + len(raw)
        while len(held) > self.max_events or size > self.max_bytes:
            size -= len(held.popleft())
        self._bytes[agent_id] = size

    def events(self, agent_id: str) -> list[bytes]:
        """``agent_id``'s events held, oldest first."""
        return list(self._events.get(agent_id, ()))

    def holds(self, agent_id: str) -> bool:
        return agent_id in self._events

    def load(self, agent_id: str, value: bytes) -> None:
        """Restore an agent's events from the table value (bounds applied again)."""
        self._events.pop(agent_id, None)
        self._bytes.pop(agent_id, None)
        for raw in decode_events(value):
            self.add(agent_id, raw)

    def dump(self, agent_id: str) -> bytes:
        """The table value of an agent's events."""
        return encode_events(self._events.get(agent_id, ()))

    def evict(self, agents: Iterable[str]) -> None:
        """Forget agents (their partition moved to another worker)."""
        for agent_id in agents:
            self._events.pop(agent_id, None)
            self._bytes.pop(agent_id, None)
