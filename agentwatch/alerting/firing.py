"""What a refreshing notifier keeps firing: each open incident's rules, per destination.

Alertmanager forgets an alert that is not posted again before its ``endsAt`` (Prometheus
re-sends every firing alert each minute for that reason). The dispatcher therefore records,
for every destination whose notifier is a
:class:`~agentwatch.alerting.notifiers.base.RefreshingNotifier`, the incidents that destination
accepted a ``trigger`` for and has not yet accepted the ``resolve`` of, with every rule that
fired in them (:class:`FiringIncident`). A notification carries only the incident's top five
anomalies, so the record accumulates: a rule that drops out of the top five stays firing until
the incident resolves, and the resolve ends every alert the destination was ever sent.

The record lives in a faust table in the worker (:class:`FiringStore` over it), so a worker
that restarts, or takes over the outbox partition, keeps refreshing what its predecessor
posted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agentwatch.schemas import Anomaly, Notification

__all__ = ["FiringIncident", "FiringRule", "FiringStore", "merge_firing", "rule_identity"]

log = logging.getLogger(__name__)

MAX_RULES = 64
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


class FiringRule(BaseModel):
    """One rule (detector, kind and severity) that fired in an incident.

    ``anomaly`` is its latest anomaly (summary, numbers); ``since`` the event time of its
    earliest one, which becomes the alert's ``startsAt``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    anomaly: Anomaly
    since: datetime


class FiringIncident(BaseModel):
    """An incident a destination holds firing: its latest notification and every rule in it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    notification: Notification
    rules: Annotated[list[FiringRule], Field(max_length=MAX_RULES)] = Field(default_factory=list)

    @property
    def incident_id(self) -> str:
        return self.notification.incident_id


def rule_identity(anomaly: Anomaly) -> tuple[str, str, str, str]:
    """What makes two anomalies the same alert: rule, detector, kind and severity.

    Examples
    --------
    >>> from datetime import datetime, timezone
    >>> a = Anomaly(anomaly_id="an-1", ts=datetime(2026, 1, 1, tzinfo=timezone.utc),
    ...             agent_id="a1", detector="runaway_loop", kind="repeat", severity="critical",
    ...             score=9, threshold=5, observed=40, baseline=2, summary="s", rule="Loop")
    >>> rule_identity(a)
    ('Loop', 'runaway_loop', 'repeat', 'critical')
    """
    return (anomaly.rule or "", anomaly.detector, anomaly.kind, anomaly.severity)


def merge_firing(previous: FiringIncident | None, notification: Notification) -> FiringIncident:
    """``previous`` with ``notification`` folded in: its rules added, the notification replaced.

    A rule seen again keeps its earliest ``since`` and takes the newest anomaly. Beyond
    :data:`MAX_RULES` the most severe, then most recent, are kept.
    """
    rules: dict[tuple[str, str, str, str], FiringRule] = {}
    if previous is not None and previous.incident_id == notification.incident_id:
        rules = {rule_identity(r.anomaly): r for r in previous.rules}
    for anomaly in notification.top_anomalies:
        key = rule_identity(anomaly)
        known = rules.get(key)
        if known is None:
            rules[key] = FiringRule(anomaly=anomaly, since=anomaly.ts)
            continue
        newest = anomaly if anomaly.ts >= known.anomaly.ts else known.anomaly
        rules[key] = FiringRule(anomaly=newest, since=min(known.since, anomaly.ts))
    kept = sorted(
        rules.values(),
        key=lambda r: (SEVERITY_RANK[r.anomaly.severity], r.anomaly.ts),
        reverse=True,
    )[:MAX_RULES]
    kept.sort(key=lambda r: (r.since, rule_identity(r.anomaly)))
    return FiringIncident(notification=notification, rules=kept)


class FiringStore:
    """Firing incidents per destination, over a mapping of bytes (a faust table, or a dict).

    Keys are ``"<destination>:<incident_id>"``; values the :class:`FiringIncident` JSON.
    Writes happen where the dispatcher records deliveries (inside the outbox stream, so a
    faust table knows the partition); reads anywhere.
    """

    def __init__(self, table: MutableMapping[Any, Any] | None = None) -> None:
        self.table: MutableMapping[Any, Any] = table if table is not None else {}

    @staticmethod
    def _key(destination: str, incident_id: str) -> bytes:
        return f"{destination}:{incident_id}".encode()

    def get(self, destination: str, incident_id: str) -> FiringIncident | None:
        """The record of ``incident_id`` at ``destination``, if it is firing there."""
        raw = self.table.get(self._key(destination, incident_id))
        return None if raw is None else self._decode(raw, destination)

    def put(self, destination: str, firing: FiringIncident) -> None:
        """Record (or replace) a firing incident."""
        self.table[self._key(destination, firing.incident_id)] = firing.model_dump_json().encode()

    def delete(self, destination: str, incident_id: str) -> None:
        """Forget an incident (its resolve was accepted)."""
        key = self._key(destination, incident_id)
        if self.table.get(key) is not None:
            del self.table[key]

    def firing(self, destination: str) -> list[FiringIncident]:
        """Every incident firing at ``destination``, oldest notification first."""
        prefix = f"{destination}:".encode()
        found = [
            record
            for key, raw in self._items()
            if bytes(key).startswith(prefix) and raw is not None
            for record in (self._decode(raw, destination),)
            if record is not None
        ]
        found.sort(key=lambda r: (r.notification.created_at, r.incident_id))
        return found

    def _items(self) -> Iterator[tuple[Any, Any]]:
        yield from list(self.table.items())

    @staticmethod
    def _decode(raw: Any, destination: str) -> FiringIncident | None:
        try:
            return FiringIncident.model_validate_json(bytes(raw))
        except (ValidationError, ValueError) as exc:
            log.error(
                "firing store: an unreadable record for %s is skipped (%s)",
                destination,
                type(exc).__name__,
            )
            return None
