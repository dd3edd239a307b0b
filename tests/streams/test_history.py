"""The responder's anomaly/audit history and the ingest stage's recent-events store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from agentwatch.alerting.silences import Mute
from agentwatch.schemas import Anomaly, AuditEntry
from agentwatch.streams.history import MAX_ANOMALIES_PER_AGENT, History
from agentwatch.streams.recent import RecentEvents

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Shim:
    class message:
        topic = "anomalies"
        partition = 0


def anomaly(n: int, agent: str = "a1") -> Anomaly:
    return Anomaly(
        anomaly_id=f"an-{agent}-{n}",
        ts=T0 + timedelta(seconds=n),
        agent_id=agent,
        detector="policy",
        kind="unapproved",
        severity="critical",
        score=9,
        threshold=5,
        observed=1,
        baseline=0,
        summary=f"finding {n}",
        evidence=[f"e{n}"],
    )


def history() -> tuple[History, dict[bytes, Any], dict[bytes, Any]]:
    anomalies: dict[bytes, Any] = {}
    audit: dict[bytes, Any] = {}
    return History(anomalies, audit, _Shim()), anomalies, audit


def test_anomalies_are_kept_once_newest_first_and_bounded() -> None:
    h, table, _ = history()
    for n in range(MAX_ANOMALIES_PER_AGENT + 5):
        h.record_anomaly(
            anomaly(n), labels={}, mute=Mute(), incident_id="inc-1", clock=n, inhibit_window=0
        )
    h.record_anomaly(
        anomaly(3, "a2"),
        labels={},
        mute=Mute(silenced_by=("sil-1",)),
        incident_id=None,
        clock=0,
        inhibit_window=0,
    )
    h.record_anomaly(  # a replay
        anomaly(3, "a2"), labels={}, mute=Mute(), incident_id=None, clock=0, inhibit_window=0
    )
    kept = h.anomalies("a1", limit=10_000)
    assert len(kept) == MAX_ANOMALIES_PER_AGENT
    assert kept[0]["anomaly_id"] == f"an-a1-{MAX_ANOMALIES_PER_AGENT + 4}"
    assert kept[-1]["anomaly_id"] == "an-a1-5"
    [muted] = h.anomalies("a2")
    assert muted["silenced_by"] == ["sil-1"] and muted["muted"] is True
    assert h.anomalies(since=T0 + timedelta(seconds=200), limit=10_000)[-1]["anomaly_id"] == (
        "an-a1-200"
    )
    assert [a["anomaly_id"] for a in h.anomalies(ids=["an-a1-7", "an-a2-3"])] == [
        "an-a1-7",
        "an-a2-3",
    ]
    assert b"\x00sources" not in table  # no inhibit rules: no sources kept


def test_sources_keep_only_source_anomalies_within_the_window() -> None:
    h, _, _ = history()
    for n, (clock, source) in enumerate([(0.0, True), (50.0, False), (100.0, True)]):
        h.record_anomaly(
            anomaly(n),
            labels={"agent": "a1"},
            mute=Mute(),
            incident_id=None,
            clock=clock,
            inhibit_window=60.0,
            source=source,
        )
    assert [(s.anomaly_id, s.clock) for s in h.sources()] == [("an-a1-2", 100.0)]


def test_audit_is_kept_per_agent_once() -> None:
    h, _, table = history()
    entries = [
        AuditEntry(
            audit_id=f"au-{i}",
            ts=T0 + timedelta(seconds=i),
            actor="alice",
            actor_kind="person",
            action="halt",
            agent_id="a1" if i < 3 else None,
        )
        for i in range(4)
    ]
    h.record_audit(entries)
    h.record_audit(entries[:1])
    assert [e["audit_id"] for e in h.audit("a1")] == ["au-2", "au-1", "au-0"]
    assert [e["audit_id"] for e in h.audit()] == ["au-3", "au-2", "au-1", "au-0"]
    assert len(orjson.loads(table[b"a1"])) == 3


def test_recent_events_are_bounded_in_bytes() -> None:
    recent = RecentEvents(max_events=100, max_bytes=100)
    for i in range(10):
        recent.add("a1", orjson.dumps({"event_id": f"e{i}", "pad": "x" * 10}), f"e{i}")
    held = recent.events("a1")
    assert sum(map(len, held)) <= 100 and orjson.loads(held[-1])["event_id"] == "e9"
    recent.add("a1", b"x" * 101)  # larger than the whole store: not kept
    assert recent.events("a1") == held
    assert list(recent.find("a1", ["e9", "e0"])) == ["e9"]  # e0 no longer held
    recent.evict(["a1"])
    assert not recent.holds("a1") and recent.events("a1") == []
