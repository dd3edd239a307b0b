"""The approval state machine (pure logic): pending, one decision wins, deadlines expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentwatch.alerting.approvals import (
    ApprovalBook,
    ApprovalConflict,
    ApprovalEntry,
    UnknownApproval,
)
from agentwatch.schemas.approvals import ApprovalRequest
from tests.fixtures import approval_request

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def request(rid: str = "req00001", agent: str = "bot", timeout_s: float = 60) -> ApprovalRequest:
    return approval_request(rid, ts=T0, timeout_s=timeout_s, agent_id=agent)


def test_a_decision_settles_only_when_read_back_and_the_first_wins() -> None:
    book = ApprovalBook()
    assert book.on_request(request())
    assert not book.on_request(request())  # a duplicate record changes nothing
    approve = book.decide("req00001", "approved", "slack:alice", "slack", "", T0)
    assert book.get("req00001").status == "pending"
    with pytest.raises(ApprovalConflict, match="being decided"):
        book.decide("req00001", "denied", "bob", "api", "", T0)
    entry = book.on_decision(approve)
    assert entry is not None and entry.status == "approved"
    assert entry.decision is not None and entry.decision.decided_by == "slack:alice"
    late = approve.model_copy(update={"outcome": "denied", "decided_by": "bob"})
    assert book.on_decision(late) is None  # the log's first decision stays
    assert book.get("req00001").status == "approved"
    with pytest.raises(ApprovalConflict, match="already approved by slack:alice"):
        book.decide("req00001", "denied", "bob", "api", "", T0)


def test_unknown_requests_and_other_agents_decisions() -> None:
    book = ApprovalBook()
    with pytest.raises(UnknownApproval, match="unknown approval request 'nope'"):
        book.decide("nope", "approved", "alice", "api", "", T0)
    book.on_request(request())
    forged = book.decide("req00001", "approved", "alice", "api", "", T0).model_copy(
        update={"agent_id": "other-bot"}
    )
    assert book.on_decision(forged) is None
    assert book.get("req00001").status == "pending"


def test_deadline_expires_pending_requests_and_refuses_late_answers() -> None:
    book = ApprovalBook()
    book.on_request(request("req00001", timeout_s=1))
    book.on_request(request("req00002", timeout_s=60))
    assert book.due(T0) == []
    later = T0 + timedelta(seconds=1)
    with pytest.raises(ApprovalConflict, match="timed out"):
        book.decide("req00001", "approved", "alice", "api", "", later)
    [expired] = book.due(later)
    assert (expired.request_id, expired.outcome, expired.via) == ("req00001", "expired", "timeout")
    assert book.due(later) == []  # being decided: not expired twice
    book.on_decision(expired)
    assert [e.status for e in book.listing()] == ["expired", "pending"]
    assert [e.request.request_id for e in book.listing("pending")] == ["req00002"]


def test_a_failed_publish_releases_the_request() -> None:
    book = ApprovalBook()
    book.on_request(request())
    book.decide("req00001", "approved", "alice", "api", "", T0)
    book.release("req00001")
    assert book.decide("req00001", "denied", "bob", "api", "", T0).outcome == "denied"


def test_entries_survive_the_table_and_old_ones_are_pruned() -> None:
    book = ApprovalBook(keep=timedelta(hours=1))
    book.on_request(request())
    entry = book.on_decision(book.decide("req00001", "denied", "bob", "api", "no", T0))
    assert entry is not None
    copy = ApprovalEntry.from_json(entry.to_json())
    assert copy == entry and copy.to_dict()["status"] == "denied"
    assert copy.to_dict()["decision"]["decided_by"] == "bob"  # type: ignore[index]
    assert book.prune(T0 + timedelta(minutes=30)) == []
    assert book.prune(T0 + timedelta(hours=2)) == ["req00001"]
    assert book.entries == {}
