"""The on-call CLI's text: tables with header rows, incident reports, argument errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentwatch.oncall import anomalies_table, incident_text, parse_when, silences_table
from tests.test_cli import run

ANOMALY = {
    "anomaly_id": "an-1",
    "ts": "2026-12-05T03:00:01Z",
    "agent_id": "support-7",
    "rule": "Unapproved",
    "severity": "critical",
    "observed": 40.0,
    "baseline": 2.0,
    "score": 9.5,
    "threshold": 5.0,
    "summary": "support-7 ran drop_table on db:users without approval",
    "silenced_by": ["sil-1"],
    "inhibited_by": [],
    "evidence_events": [
        {
            "event_id": "e-1",
            "held": True,
            "event": {"ts": "2026-12-05T03:00:00Z", "action": "drop_table", "target": "db:users"},
        },
        {"event_id": "e-0", "held": False},
        {"event_id": "e-9", "held": None},
    ],
}


def test_anomalies_table_has_a_header_and_the_numbers() -> None:
    lines = anomalies_table([ANOMALY]).splitlines()
    assert lines[0].split() == [
        "TIME",
        "AGENT",
        "RULE",
        "SEVERITY",
        "OBSERVED",
        "BASELINE",
        "SCORE",
        "THRESHOLD",
        "MUTED",
        "BY",
        "SUMMARY",
    ]
    assert lines[1].split()[:10] == [
        "2026-12-05",
        "03:00:01",
        "support-7",
        "Unapproved",
        "critical",
        "40",
        "2",
        "9.5",
        "5",
        "sil-1",
    ]


def test_incident_report_shows_evidence_held_or_not() -> None:
    doc = {
        "incident_id": "inc-1",
        "status": "acknowledged",
        "severity": "critical",
        "title": "drop_table",
        "agent_id": "support-7",
        "fleet": "support",
        "anomaly_count": 1,
        "acknowledged_by": "bob",
        "control": None,
        "anomalies": [ANOMALY],
        "audit": [],
    }
    text = incident_text(doc)
    assert text.splitlines()[0] == "incident inc-1 [acknowledged, critical] drop_table"
    assert "acknowledged by bob" in text and "control: running (no control changes)" in text
    evidence = text.split("EVIDENCE\n")[1].split("\n\n")[0].splitlines()
    assert evidence[0].split()[:3] == ["ANOMALY", "EVENT", "HELD"]
    assert evidence[1].split()[:4] == ["an-1", "e-1", "yes", "2026-12-05"]
    assert evidence[2].split()[:5] == ["an-1", "e-0", "no", "longer", "held"]
    assert evidence[3].split()[:3] == ["an-1", "e-9", "unavailable"]
    assert text.endswith("CONTROL AND AUDIT HISTORY\nnone kept")


def test_silences_table_and_times() -> None:
    row = {
        "silence_id": "sil-1",
        "status": "pending",
        "starts_at": "2026-01-02T01:00:00Z",
        "ends_at": "2026-01-02T03:00:00Z",
        "created_by": "alice",
        "matchers_text": ['fleet="support"'],
        "comment": "DB migration",
    }
    lines = silences_table([row]).splitlines()
    assert lines[0].split()[:2] == ["SILENCE", "STATUS"]
    assert 'fleet="support"' in lines[1] and "DB migration" in lines[1]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_when("now", now) == now
    assert parse_when("2026-01-02T03:00:00+02:00", now).astimezone(UTC).hour == 1
    with pytest.raises(ValueError, match="not a time"):
        parse_when("tomorrow", now)


def test_silences_add_checks_its_arguments_before_calling_the_api() -> None:
    out = run("silences", "add", "--duration", "1h", AGENTWATCH_API_TOKEN="x")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == (
        "agentwatch: name at least one matcher (e.g. --agent A, --fleet F, 'rule=\"R\"'); "
        "say why with --comment"
    )
    out = run("silences", "add", "agent", "-m", "x", "--end", "+1h", "--duration", "1h")
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "agentwatch: give --end or --duration (one of them); not a matcher: 'agent'; write "
        "name=value, name!=value, name=~regex or name!~regex"
    )
    out = run("silences", "add", "--fleet", "f", "-m", "x", "--end", "soon")
    assert out.returncode == 2 and "'soon' is not a time" in out.stderr
