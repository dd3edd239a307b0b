"""The incident state machine: grouping, escalation, repeats, auto-resolve, flapping."""

from __future__ import annotations

from datetime import UTC, datetime

from agentwatch.alerting.incidents import IncidentBook, IncidentPolicy, IncidentState
from agentwatch.schemas import Anomaly

POLICY = IncidentPolicy(
    group_wait=10, group_interval=60, repeat_interval=3600, resolve_after=600, reopen_window=1800
)


def anomaly(n: int, severity: str = "error", agent: str = "a1") -> Anomaly:
    return Anomaly(
        anomaly_id=f"an-{n}",
        ts=datetime(2026, 1, 1, tzinfo=UTC),
        agent_id=agent,
        detector="cost_spike",
        kind="spike",
        severity=severity,  # type: ignore[arg-type]
        score=9.0,
        threshold=5.0,
        observed=40.0,
        baseline=2.0,
        summary=f"anomaly {n} ({severity})",
    )


def run(book: IncidentBook, state: IncidentState, until: float, step: float = 1.0) -> list:
    notes = []
    t = state.last_anomaly_clock
    while t <= until:
        state, out = book.due(state, t)
        notes += [(t, n) for n in out]
        t += step
    return notes


def test_many_anomalies_one_page_then_one_resolve_with_one_dedup_key() -> None:
    book = IncidentBook(POLICY)
    state = None
    for i in range(20):
        state, fresh = book.add(state, anomaly(i), now=float(i))
        assert fresh
    assert state is not None
    notes = run(book, state, until=2000)
    events = [(n.event, n.reason) for _, n in notes]
    assert events == [("trigger", "opened"), ("resolve", "resolved")]
    assert {n.dedup_key for _, n in notes} == {state.incident.incident_id}
    assert len({n.notification_id for _, n in notes}) == 2
    assert notes[1][0] == 19 + 600  # quiet period after the last anomaly
    assert notes[0][1].anomaly_count == 20


def test_replayed_anomaly_is_recognised() -> None:
    book = IncidentBook(POLICY)
    state, _ = book.add(None, anomaly(1), now=0)
    again, fresh = book.add(state, anomaly(1), now=5)
    assert not fresh and again is state


def test_escalation_waits_for_group_interval_and_same_severity_is_silent() -> None:
    book = IncidentBook(POLICY)
    state, _ = book.add(None, anomaly(1, "warning"), now=0)
    state, notes = book.due(state, 10)
    assert [n.severity for n in notes] == ["warning"]
    state, _ = book.add(state, anomaly(2, "warning"), now=20)
    assert book.due(state, 30)[1] == []  # more of the same: no page
    state, _ = book.add(state, anomaly(3, "critical"), now=40)
    assert book.due(state, 69)[1] == []  # inside the group interval since the last page
    state, notes = book.due(state, 70)
    assert [(n.reason, n.severity) for n in notes] == [("escalated", "critical")]
    assert book.next_due(state) == 40 + 600  # next: the auto-resolve


def test_repeat_while_open_but_not_once_acknowledged() -> None:
    book = IncidentBook(IncidentPolicy(group_wait=0, repeat_interval=100, resolve_after=10_000))
    state, _ = book.add(None, anomaly(1), now=0)
    state, first = book.due(state, 0)
    state, repeat = book.due(state, 100)
    assert [n.reason for n in first + repeat] == ["opened", "repeat"]
    state, acked = book.acknowledge(state, 150, by="alice")
    assert [(n.event, n.actor) for n in acked] == [("acknowledge", "alice")]
    assert book.due(state, 1000)[1] == []


def test_acknowledged_before_the_first_page_pages_nobody() -> None:
    book = IncidentBook(POLICY)
    state, _ = book.add(None, anomaly(1), now=0)
    state, notes = book.acknowledge(state, 2, by="alice")
    assert notes == []
    assert run(book, state, until=5000) == []  # no page, so no resolve either
    assert book.due(state, 600)[0].incident.status == "resolved"


def test_resolved_before_any_page_sends_no_resolve() -> None:
    book = IncidentBook(POLICY)
    state, _ = book.add(None, anomaly(1), now=0)
    state, notes = book.resolve(state, 5, by="bob")
    assert notes == [] and state.incident.status == "resolved"
    assert state.incident.resolved_by == "bob"


def test_flapping_agent_reopens_the_same_incident_with_a_longer_quiet_period() -> None:
    book = IncidentBook(POLICY)
    state, _ = book.add(None, anomaly(1), now=0)
    state = book.due(state, 700)[0]
    first_id = state.incident.incident_id
    assert state.incident.status == "resolved"
    state, _ = book.add(state, anomaly(2), now=800)  # within the reopen window
    assert state.incident.incident_id == first_id and state.incident.status == "open"
    assert state.flaps == 1 and state.quiet_period(POLICY) == 1200
    # a resolve after the reopen window starts a new incident
    state = book.due(state, 800 + 1200)[0]
    assert state.incident.status == "resolved"
    state, _ = book.add(state, anomaly(3), now=800 + 1200 + 1801)
    assert state.incident.incident_id != first_id and state.flaps == 0


def test_notification_carries_commands_control_and_top_anomalies() -> None:
    book = IncidentBook(IncidentPolicy(group_wait=0))
    state, _ = book.add(
        None, anomaly(1, "critical"), now=0, actions_taken=["halted by X"], runbook_url="u"
    )
    for i in range(2, 9):
        state, _ = book.add(state, anomaly(i, "warning"), now=float(i))
    _, notes = book.due(state, 10)
    note = notes[0]
    assert note.actions_taken == ["halted by X"] and note.runbook_url == "u"
    assert len(note.top_anomalies) == 5 and note.top_anomalies[0].severity == "critical"
    assert any(c.startswith("agentwatch incidents ack") for c in note.commands)
    assert any(c.startswith("agentwatch agents halt a1") for c in note.commands)
