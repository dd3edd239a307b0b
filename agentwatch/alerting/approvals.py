"""The approval state machine: requests wait, one decision settles each (pure logic, no I/O).

A request is ``pending`` from the moment its record is read until the first decision record
for it is read: ``approved``, ``denied`` or ``expired`` (its ``expires_at`` passed). Decisions
are made here (:meth:`ApprovalBook.decide`, :meth:`ApprovalBook.due`) but take effect only when
read back from the approvals log (:meth:`ApprovalBook.on_decision`), so the log order is the
truth every reader (the worker, the waiting agent) agrees on. A request already being decided
here refuses a second decision (two people clicking at once: one wins, the other is told).

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> req = ApprovalRequest(request_id="r1234567", ts=now, expires_at=now + timedelta(minutes=1),
...     agent_id="bot", action="payments.refund", requirement="payments")
>>> book = ApprovalBook()
>>> book.on_request(req)
True
>>> decision = book.decide("r1234567", "approved", "slack:alice", "slack", "", now)
>>> book.get("r1234567").status, book.on_decision(decision).status
('pending', 'approved')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import orjson

from agentwatch.schemas.approvals import ApprovalDecision, ApprovalRequest, Outcome

__all__ = [
    "ApprovalBook",
    "ApprovalConflict",
    "ApprovalEntry",
    "Status",
    "UnknownApproval",
]

Status = Literal["pending", "approved", "denied", "expired"]
Via = Literal["slack", "api", "timeout"]


class UnknownApproval(KeyError):
    """No request with this id (never asked, or forgotten long after its decision)."""

    def __str__(self) -> str:
        return f"unknown approval request {self.args[0]!r}"


class ApprovalConflict(ValueError):
    """The request is not pending any more (decided, being decided, or expired)."""


@dataclass
class ApprovalEntry:
    """One request and, once settled, its decision."""

    request: ApprovalRequest
    decision: ApprovalDecision | None = None
    posted: bool = False  # Slack accepted the request's message (an ApprovalPosted was read)

    @property
    def status(self) -> Status:
        return "pending" if self.decision is None else self.decision.outcome

    def to_dict(self) -> dict[str, object]:
        """The entry as the API shows it (request fields, status and decision)."""
        doc: dict[str, object] = self.request.model_dump(mode="json", exclude={"type"})
        doc["status"] = self.status
        doc["decision"] = (
            None
            if self.decision is None
            else self.decision.model_dump(mode="json", exclude={"type", "key_id", "signature"})
        )
        return doc

    def to_json(self) -> bytes:
        """For the worker's table (restored with :meth:`from_json`)."""
        return orjson.dumps(
            {
                "request": self.request.model_dump(mode="json"),
                "decision": None
                if self.decision is None
                else self.decision.model_dump(mode="json"),
                "posted": self.posted,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes) -> ApprovalEntry:
        doc = orjson.loads(raw)
        request = ApprovalRequest.model_validate_json(orjson.dumps(doc["request"]))
        decision = doc.get("decision")
        return cls(
            request=request,
            decision=None
            if decision is None
            else ApprovalDecision.model_validate_json(orjson.dumps(decision)),
            posted=bool(doc.get("posted", False)),
        )


@dataclass
class ApprovalBook:
    """Every known request by id; decided ones are kept ``keep`` after their decision."""

    keep: timedelta = timedelta(hours=24)
    entries: dict[str, ApprovalEntry] = field(default_factory=dict)
    _deciding: set[str] = field(default_factory=set)

    def get(self, request_id: str) -> ApprovalEntry:
        """The entry of ``request_id``; raises :class:`UnknownApproval`."""
        try:
            return self.entries[request_id]
        except KeyError:
            raise UnknownApproval(request_id) from None

    def restore(self, entry: ApprovalEntry) -> None:
        """Hold an entry read back from storage."""
        self.entries[entry.request.request_id] = entry

    def on_request(self, request: ApprovalRequest) -> bool:
        """A request record was read; ``True`` when it is new (a duplicate is ignored)."""
        if request.request_id in self.entries:
            return False
        self.entries[request.request_id] = ApprovalEntry(request)
        return True

    def on_posted(self, request_id: str) -> ApprovalEntry | None:
        """A posted record was read: the entry it marks, or ``None`` (unknown, or marked)."""
        entry = self.entries.get(request_id)
        if entry is None or entry.posted:
            return None
        entry.posted = True
        return entry

    def unposted(self) -> list[ApprovalEntry]:
        """Pending requests whose Slack message was not accepted yet, oldest first."""
        waiting = [e for e in self.entries.values() if e.decision is None and not e.posted]
        return sorted(waiting, key=lambda e: e.request.ts)

    def on_decision(self, decision: ApprovalDecision) -> ApprovalEntry | None:
        """A decision record was read: the entry it settles, or ``None`` when it settles
        nothing (unknown request, another agent's, or one already settled: the first wins)."""
        self._deciding.discard(decision.request_id)
        entry = self.entries.get(decision.request_id)
        if entry is None or entry.decision is not None:
            return None
        if entry.request.agent_id != decision.agent_id:
            return None
        entry.decision = decision
        return entry

    def decide(  # noqa: PLR0917 - the fields of a decision
        self,
        request_id: str,
        outcome: Outcome,
        decided_by: str,
        via: Via,
        reason: str,
        now: datetime,
    ) -> ApprovalDecision:
        """The (unsigned) decision to publish for a person's answer.

        Raises
        ------
        UnknownApproval
            no such request.
        ApprovalConflict
            already decided, being decided, or past its deadline (it is denied as expired).
        """
        entry = self.get(request_id)
        if entry.decision is not None:
            d = entry.decision
            raise ApprovalConflict(
                f"approval {request_id} was already {d.outcome} by {d.decided_by}"
            )
        if request_id in self._deciding:
            raise ApprovalConflict(f"approval {request_id} is being decided by someone else")
        if outcome != "expired" and now >= entry.request.expires_at:
            raise ApprovalConflict(
                f"approval {request_id} timed out at {entry.request.expires_at.isoformat()}; "
                "the call was denied"
            )
        self._deciding.add(request_id)
        return ApprovalDecision(
            request_id=request_id,
            agent_id=entry.request.agent_id,
            action=entry.request.action,
            outcome=outcome,
            decided_by=decided_by,
            via=via,
            reason=reason,
            decided_at=now,
        )

    def release(self, request_id: str) -> None:
        """A decision could not be published: the request may be decided again."""
        self._deciding.discard(request_id)

    def due(self, now: datetime) -> list[ApprovalDecision]:
        """Expiry decisions for the pending requests whose deadline passed."""
        expired = [
            entry.request.request_id
            for entry in self.entries.values()
            if entry.decision is None
            and entry.request.request_id not in self._deciding
            and now >= entry.request.expires_at
        ]
        return [
            self.decide(rid, "expired", "agentwatch", "timeout", "no decision in time", now)
            for rid in expired
        ]

    def prune(self, now: datetime) -> list[str]:
        """Forget entries decided more than ``keep`` ago; returns their ids."""
        gone = [
            rid
            for rid, entry in self.entries.items()
            if entry.decision is not None and now - entry.decision.decided_at > self.keep
        ]
        for rid in gone:
            del self.entries[rid]
        return gone

    def listing(self, status: Status | None = None) -> list[ApprovalEntry]:
        """Entries (of one status), oldest request first."""
        items = [e for e in self.entries.values() if status is None or e.status == status]
        return sorted(items, key=lambda e: (e.request.ts, e.request.request_id))
