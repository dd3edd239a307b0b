"""The console's pages escape everything that comes from events, anomalies and people."""

from __future__ import annotations

import re
from typing import Any

from agentwatch.streams.console import pages

EVIL = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
ESCAPED = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"


def anomaly(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "anomaly_id": EVIL,
        "ts": "2026-01-01T00:00:00Z",
        "agent_id": "a1",
        "detector": "policy",
        "kind": EVIL,
        "severity": "critical",
        "score": 9.5,
        "threshold": 4.0,
        "observed": 12.5,
        "baseline": 1.25,
        "summary": f"agent a1 did {EVIL}",
        "rule": EVIL,
        "silenced_by": [EVIL],
        "inhibited_by": [],
        "evidence_events": [
            {"event_id": EVIL, "held": True, "event": {"target": EVIL, "action": EVIL}},
            {"event_id": "gone", "held": False},
            {"event_id": "far", "held": None},
        ],
    }
    doc.update(extra)
    return doc


def assert_no_markup_from(page: str) -> None:
    assert "<script" not in page and "<img" not in page  # no element from the data
    assert ESCAPED in page  # shown as text instead
    assert "<" + "/main>" in page  # and the page itself was still rendered to its end


def test_incident_page_escapes_every_attacker_controlled_field() -> None:
    doc = {
        "incident_id": "inc-1",
        "agent_id": "a1",
        "fleet": EVIL,
        "status": "open",
        "severity": "critical",
        "title": EVIL,
        "opened_at": "2026-01-01T00:00:00Z",
        "control": {
            "halted": True,
            "revoked": [EVIL],
            "version": 3,
            "updated_by": EVIL,
            "reason": EVIL,
        },
        "anomalies": [anomaly()],
        "audit": [
            {
                "ts": "t",
                "action": "halt",
                "actor": EVIL,
                "actor_kind": "person",
                "reason": EVIL,
                "detail": {"x": EVIL},
            }
        ],
        "evidence_unavailable": [EVIL],
    }
    page = pages.incident_page(doc, csrf='c"sr<f', actor=EVIL, done=None)
    assert_no_markup_from(page)
    assert 'value="c&quot;sr&lt;f"' in page  # the CSRF token stays inside its attribute
    assert "no longer held" in page and "did not answer" in page
    assert "12.5" in page and "1.25" in page and "9.5" in page and "4" in page
    assert 'action="/console/incidents/inc-1/ack"' in page


def test_agent_page_escapes_ids_in_links_and_text() -> None:
    agent = {
        "agent_id": EVIL,
        "fleet": EVIL,
        "ew": {"cost_usd": {"mean": 1.0}},
        "control": None,
        "incident": {"incident_id": EVIL, "status": "open", "title": EVIL},
    }
    page = pages.agent_page(
        agent,
        events=[{"event_id": EVIL, "action": EVIL, "target": EVIL, "risk": EVIL}],
        anomalies=[anomaly()],
        audit=[],
        silences=[
            {"silence_id": EVIL, "matchers_text": [EVIL], "comment": EVIL, "created_by": EVIL}
        ],
        csrf="tok",
        actor="alice",
        done="Agent halted.",
        error=EVIL,
    )
    assert_no_markup_from(page)
    # ids in URLs are percent-encoded: nothing can leave the attribute or the path segment
    for href in re.findall(r'(?:href|action)="([^"]*)"', page):
        assert "<" not in href and ">" not in href and " " not in href, href
    assert "/console/agents/%22%3E%3Cscript%3E" in page
    assert "ew.cost_usd.mean" in page


def test_incidents_and_login_pages_escape_too() -> None:
    listing = pages.incidents_page(
        [
            {
                "incident_id": EVIL,
                "agent_id": EVIL,
                "severity": EVIL,
                "status": "open",
                "fleet": EVIL,
                "title": EVIL,
            }
        ],
        statuses=EVIL,
        csrf="tok",
        actor=EVIL,
    )
    assert_no_markup_from(listing)
    login = pages.login_page("/console/x", error=EVIL)
    assert_no_markup_from(login)
    assert 'type="password"' in login and "value=" not in login.split('name="token"')[1][:40]


def test_pages_load_nothing_from_elsewhere() -> None:
    page = pages.login_page("/console/incidents")
    urls = re.findall(r'(?:href|src|action)="([^"]*)"', page)
    assert urls and all(u.startswith("/console") for u in urls), urls
    assert "http" not in pages.STYLE and "@import" not in pages.STYLE
