"""What on-call reads back: each agent's recent anomalies (with why they were or were not paged)
and its control/audit history, kept in the responder's faust tables.

Both are bounded per agent, in count and in bytes (:func:`append_bounded`): the oldest records
go first. The audit topic stays the complete record; these tables answer ``GET /anomalies``,
``GET /audit`` and the evidence of ``GET /incidents/{id}``. The inhibition sources (recent
anomalies of every agent, with their labels) live under one key of the anomalies table.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import orjson
from faust.streams import _current_event

from agentwatch.alerting.silences import Mute, SourceAlert
from agentwatch.schemas import Anomaly, AuditEntry

__all__ = [
    "MAX_ANOMALIES_PER_AGENT",
    "MAX_AUDIT_PER_AGENT",
    "MAX_BYTES_PER_AGENT",
    "History",
    "append_bounded",
]

MAX_ANOMALIES_PER_AGENT = 200
MAX_AUDIT_PER_AGENT = 500
MAX_BYTES_PER_AGENT = 512 * 1024
MAX_SOURCES = 1000
_SOURCES = b"\x00sources"
_NO_AGENT = b"\x00none"


def append_bounded(
    items: list[dict[str, Any]],
    item: dict[str, Any],
    *,
    key: str,
    max_items: int,
    max_bytes: int,
) -> tuple[list[dict[str, Any]], bool]:
    """``items`` with ``item`` appended (unless one with the same ``key`` is there), then the
    oldest dropped until at most ``max_items`` remain and their JSON fits ``max_bytes``.

    Returns the new list and whether ``item`` was added.

    Examples
    --------
    >>> out, added = append_bounded([{"id": 1}, {"id": 2}], {"id": 3}, key="id", max_items=2,
    ...                             max_bytes=1000)
    >>> out, added
    ([{'id': 2}, {'id': 3}], True)
    >>> append_bounded(out, {"id": 3}, key="id", max_items=2, max_bytes=1000)[1]
    False
    >>> append_bounded([{"id": "x" * 50}], {"id": "y"}, key="id", max_items=9, max_bytes=20)[0]
    [{'id': 'y'}]
    """
    if any(existing.get(key) == item.get(key) for existing in items):
        return items, False
    out = [*items, item][-max_items:]
    sizes = [len(orjson.dumps(x)) for x in out]
    total = sum(sizes)
    start = 0
    while total > max_bytes and start < len(out) - 1:
        total -= sizes[start]
        start += 1
    return out[start:], True


class History:
    """Anomaly and audit history over two faust tables of the responder (one partition).

    Parameters
    ----------
    anomalies, audit
        Faust tables ``agent_id -> JSON list``.
    shim
        The stand-in current event whose partition (0) table writes outside a stream use.
    """

    def __init__(self, anomalies: Any, audit: Any, shim: Any) -> None:
        self.anomalies_table = anomalies
        self.audit_table = audit
        self.shim = shim

    # -- writes ----------------------------------------------------------------------------
    def _write(self, table: Any, key: bytes, value: Any) -> None:
        token = _current_event.set(weakref.ref(self.shim))
        try:
            table[key] = orjson.dumps(value)
        finally:
            _current_event.reset(token)

    def _read(self, table: Any, key: bytes) -> list[dict[str, Any]]:
        raw = table.get(key)
        return [] if raw is None else list(orjson.loads(raw))

    def record_anomaly(
        self,
        anomaly: Anomaly,
        *,
        labels: Mapping[str, str],
        mute: Mute,
        incident_id: str | None,
        clock: float,
        inhibit_window: float,
        source: bool = True,
    ) -> None:
        """Keep ``anomaly`` in its agent's history and, when ``source`` (an inhibit rule's
        source matchers match it), among the inhibition sources of the last
        ``inhibit_window`` seconds (at most :data:`MAX_SOURCES`)."""
        key = anomaly.agent_id.encode()
        record = anomaly.model_dump(mode="json")
        record.update(
            incident_id=incident_id,
            silenced_by=list(mute.silenced_by),
            inhibited_by=list(mute.inhibited_by),
            muted=mute.muted,
        )
        items, added = append_bounded(
            self._read(self.anomalies_table, key),
            record,
            key="anomaly_id",
            max_items=MAX_ANOMALIES_PER_AGENT,
            max_bytes=MAX_BYTES_PER_AGENT,
        )
        if not added:
            return
        self._write(self.anomalies_table, key, items)
        if source and inhibit_window > 0:
            sources = [
                s
                for s in self._read(self.anomalies_table, _SOURCES)
                if clock - float(s["clock"]) <= inhibit_window
            ]
            sources.append({"clock": clock, "anomaly_id": anomaly.anomaly_id, "labels": labels})
            self._write(self.anomalies_table, _SOURCES, sources[-MAX_SOURCES:])

    def record_audit(self, entries: Iterable[AuditEntry]) -> None:
        """Keep each entry in its agent's audit history (replays are recognised by id)."""
        by_agent: dict[bytes, list[AuditEntry]] = {}
        for entry in entries:
            key = entry.agent_id.encode() if entry.agent_id else _NO_AGENT
            by_agent.setdefault(key, []).append(entry)
        for key, group in by_agent.items():
            items = self._read(self.audit_table, key)
            changed = False
            for entry in group:
                items, added = append_bounded(
                    items,
                    entry.model_dump(mode="json"),
                    key="audit_id",
                    max_items=MAX_AUDIT_PER_AGENT,
                    max_bytes=MAX_BYTES_PER_AGENT,
                )
                changed = changed or added
            if changed:
                self._write(self.audit_table, key, items)

    # -- reads -----------------------------------------------------------------------------
    def sources(self) -> list[SourceAlert]:
        """The recent anomalies inhibit rules look at."""
        return [
            SourceAlert(float(s["clock"]), str(s["anomaly_id"]), dict(s["labels"]))
            for s in self._read(self.anomalies_table, _SOURCES)
        ]

    def anomalies(
        self,
        agent: str | None = None,
        since: datetime | None = None,
        ids: Iterable[str] | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Recorded anomalies, newest first; of one agent, since a time, or with given ids."""
        if agent is not None:
            keys = [agent.encode()]
        else:
            keys = [k for k in list(self.anomalies_table.keys()) if not k.startswith(b"\x00")]
        wanted = set(ids) if ids is not None else None
        out = []
        for key in keys:
            for record in self._read(self.anomalies_table, key):
                if wanted is not None and record["anomaly_id"] not in wanted:
                    continue
                if since is not None and datetime.fromisoformat(record["ts"]) < since:
                    continue
                out.append(record)
        out.sort(key=lambda r: str(r["ts"]), reverse=True)
        return out[:limit]

    def audit(
        self,
        agent: str | None = None,
        since: datetime | None = None,
        incident_id: str | None = None,
        limit: int = 500,
    ) -> list[dict[str, Any]]:
        """Audit entries kept here, newest first; of one agent, since a time, of an incident."""
        if agent is not None:
            keys = [agent.encode()]
        else:
            keys = [k for k in list(self.audit_table.keys()) if k != _SOURCES]
        out = []
        for key in keys:
            for entry in self._read(self.audit_table, key):
                if incident_id is not None and entry.get("incident_id") not in (
                    incident_id,
                    None,
                ):
                    continue
                if since is not None and datetime.fromisoformat(entry["ts"]) < since:
                    continue
                out.append(entry)
        out.sort(key=lambda e: str(e["ts"]), reverse=True)
        return out[:limit]
