"""The console's HTML: pure functions from the control API's JSON documents to pages.

Every value that comes from events, anomalies or people (agent ids, targets, summaries,
reasons, comments) is attacker-controlled: it goes through :func:`esc` (``html.escape`` with
quotes) before it reaches a page, in text and in attributes alike. Pages load nothing from the
internet: the one stylesheet is served by the worker (:data:`STYLE`).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import orjson

__all__ = [
    "PREFIX",
    "STYLE",
    "agent_page",
    "esc",
    "incident_page",
    "incidents_page",
    "login_page",
    "message_page",
]

PREFIX = "/console"
MAX_CELL = 300

STYLE = """\
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#f6f7f9}
header{background:#1f2937;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:center}
header a{color:#fff}header form{margin-left:auto}
main{padding:1em 1.5em;max-width:1200px}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse;width:100%;background:#fff;margin:.5em 0}
th,td{border:1px solid #d0d4da;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#eef0f3}
pre{background:#fff;border:1px solid #d0d4da;padding:.5em;overflow:auto;max-height:20em;
white-space:pre-wrap;word-break:break-all}
.sev-critical{color:#b00020;font-weight:bold}.sev-warning{color:#a15c00}
.flash{background:#e7f6e7;border:1px solid #8c8;padding:.5em}
.error{background:#fdecea;border:1px solid #e99;padding:.5em}
.actions{display:flex;flex-wrap:wrap;gap:1em}
.actions form{background:#fff;border:1px solid #d0d4da;padding:.6em}
label{display:block;margin:.2em 0}input[type=text],input[type=password]{width:16em}
button{cursor:pointer;padding:.3em .9em}
.muted{color:#666}
"""


def esc(value: Any) -> str:
    """``value`` as HTML text, safe in element content and in quoted attributes.

    >>> esc('<script>alert("x")</script>')
    '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'
    >>> esc(None), esc(1.5)
    ('', '1.5')
    """
    if value is None:
        return ""
    return html.escape(value if isinstance(value, str) else str(value), quote=True)


def path_part(value: str) -> str:
    """``value`` as one URL path segment (nothing in it can end the segment).

    >>> path_part("a/b c")
    'a%2Fb%20c'
    """
    return quote(value, safe="")


def agent_href(agent_id: str) -> str:
    """The console page of an agent."""
    return f"{PREFIX}/agents/{path_part(agent_id)}"


def incident_href(incident_id: str) -> str:
    """The console page of an incident."""
    return f"{PREFIX}/incidents/{path_part(incident_id)}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return esc(value)


def layout(title: str, body: str, *, csrf: str | None = None, actor: str | None = None) -> str:
    """A whole page: header (with logout when logged in), ``body``, the served stylesheet."""
    nav = ""
    if csrf is not None:
        nav = (
            f'<a href="{PREFIX}/incidents">Incidents</a>'
            f'<form method="post" action="{PREFIX}/logout">{csrf_field(csrf)}'
            f'<span class="muted">{esc(actor)}</span> <button>Log out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)} · agentwatch</title>"
        f'<link rel="stylesheet" href="{PREFIX}/style.css"></head>'
        f"<body><header><strong>agentwatch on-call</strong>{nav}</header>"
        f"<main>{body}</main></body></html>"
    )


def csrf_field(csrf: str) -> str:
    """The hidden CSRF field every state-changing form carries."""
    return f'<input type="hidden" name="csrf" value="{esc(csrf)}">'


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str = "none") -> str:
    """A table of already-escaped cells."""
    rows = list(rows)
    if not rows:
        return f'<p class="muted">{esc(empty)}</p>'
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def flat(doc: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested mappings as dotted keys (``ew.cost_usd.mean``)."""
    out: list[tuple[str, Any]] = []
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.extend(flat(value, f"{name}."))
        else:
            out.append((name, value))
    return out


def flash(message: str | None, error: str | None = None) -> str:
    """A success line and/or an error line (escaped)."""
    out = ""
    if message:
        out += f'<p class="flash" role="status">{esc(message)}</p>'
    if error:
        out += f'<p class="error" role="alert">{esc(error)}</p>'
    return out


# -- login ---------------------------------------------------------------------------------


def login_page(next_path: str, error: str | None = None) -> str:
    """The login form: the API token and a name for the audit log (the token is never
    echoed back)."""
    body = (
        "<h1>Log in</h1>" + flash(None, error) + f'<form method="post" action="{PREFIX}/login">'
        f'<input type="hidden" name="next" value="{esc(next_path)}">'
        '<label>API token <input type="password" name="token" id="token" '
        'autocomplete="off" required></label>'
        '<label>Your name (written in the audit log) <input type="text" name="actor" '
        'id="actor" required maxlength="128"></label>'
        '<button type="submit" id="login">Log in</button></form>'
    )
    return layout("Log in", body)


def message_page(title: str, message: str, *, back: str | None = None, **session: Any) -> str:
    """A page saying one thing (an error), with a link back."""
    link = f'<p><a href="{esc(back)}">Back</a></p>' if back else ""
    return layout(title, f"<h1>{esc(title)}</h1>{flash(None, message)}{link}", **session)


# -- incidents -----------------------------------------------------------------------------


def incidents_page(
    incidents: Sequence[Mapping[str, Any]], *, statuses: str, csrf: str, actor: str
) -> str:
    """Incidents, newest first, with links to their pages and their agents'."""
    rows = [
        (
            f'<a href="{incident_href(i["incident_id"])}">{esc(i["incident_id"])}</a>',
            f'<span class="sev-{esc(i.get("severity"))}">{esc(i.get("severity"))}</span>',
            esc(i.get("status")),
            f'<a href="{agent_href(i["agent_id"])}">{esc(i["agent_id"])}</a>',
            esc(i.get("fleet")),
            esc(i.get("title")),
            esc(i.get("opened_at")),
            esc(i.get("anomaly_count")),
        )
        for i in incidents
    ]
    filters = " · ".join(
        f'<a href="{PREFIX}/incidents?status={q}">{label}</a>'
        for q, label in (
            ("open,acknowledged", "open and acknowledged"),
            ("open", "open"),
            ("resolved", "resolved"),
            ("all", "all"),
        )
    )
    body = f"<h1>Incidents ({esc(statuses)})</h1><p>{filters}</p>" + table(
        ["Incident", "Severity", "Status", "Agent", "Fleet", "Title", "Opened", "Anomalies"],
        rows,
        empty="no incidents",
    )
    return layout("Incidents", body, csrf=csrf, actor=actor)


def anomalies_section(anomalies: Sequence[Mapping[str, Any]]) -> str:
    """Each anomaly: its explanation, observed vs baseline, score vs threshold, whether it
    paged, and its evidence events."""
    if not anomalies:
        return '<p class="muted">no anomalies recorded</p>'
    parts = []
    for a in anomalies:
        silenced, inhibited = a.get("silenced_by") or [], a.get("inhibited_by") or []
        paged = "paged"
        if silenced or inhibited:
            why = [f"silenced by {', '.join(silenced)}"] if silenced else []
            why += [f"inhibited by {', '.join(inhibited)}"] if inhibited else []
            paged = esc(f"not paged ({'; '.join(why)})")
        head = table(
            [
                "Anomaly",
                "Time",
                "Detector",
                "Rule",
                "Severity",
                "Observed",
                "Baseline",
                "Score",
                "Threshold",
                "Notification",
            ],
            [
                (
                    esc(a.get("anomaly_id")),
                    esc(a.get("ts")),
                    esc(f"{a.get('detector')} ({a.get('kind')})"),
                    esc(a.get("rule")),
                    f'<span class="sev-{esc(a.get("severity"))}">{esc(a.get("severity"))}</span>',
                    _number(a.get("observed")),
                    _number(a.get("baseline")),
                    _number(a.get("score")),
                    _number(a.get("threshold")),
                    paged,
                )
            ],
        )
        parts.append(
            f'<section class="anomaly"><h3>{esc(a.get("summary"))}</h3>{head}'
            f"<h4>Evidence</h4>{evidence_section(a.get('evidence_events') or [])}</section>"
        )
    return "".join(parts)


def evidence_section(items: Sequence[Mapping[str, Any]]) -> str:
    """Evidence events: held ones in full, the others by id and why they are missing."""
    rows = []
    for item in items:
        event = item.get("event")
        if isinstance(event, Mapping):
            shown = f"<pre>{esc(orjson.dumps(event, option=orjson.OPT_INDENT_2).decode())}</pre>"
        elif item.get("held") is None:
            shown = '<span class="muted">the worker holding it did not answer</span>'
        else:
            shown = '<span class="muted">no longer held</span>'
        rows.append((esc(item.get("event_id")), shown))
    return table(["Event", "Content"], rows, empty="no evidence events")


def audit_section(entries: Sequence[Mapping[str, Any]]) -> str:
    """Control and audit history, newest first."""
    rows = [
        (
            esc(e.get("ts")),
            esc(e.get("action")),
            esc(f"{e.get('actor')} ({e.get('actor_kind')})"),
            esc(e.get("incident_id")),
            esc(_short(e.get("reason") or "")),
            esc(_short(e.get("detail") or {})),
        )
        for e in entries
    ]
    return table(["Time", "Action", "By", "Incident", "Reason", "Detail"], rows, empty="none")


def control_line(control: Mapping[str, Any] | None) -> str:
    """The agent's control state in one line."""
    if not control:
        return "running (never controlled)"
    state = "HALTED" if control.get("halted") else "running"
    revoked = ", ".join(control.get("revoked") or []) or "none"
    return (
        f"{state}; revoked: {revoked}; version {control.get('version')}; last change by "
        f"{control.get('updated_by')}: {control.get('reason')}"
    )


def incident_page(doc: Mapping[str, Any], *, csrf: str, actor: str, done: str | None) -> str:
    """One incident: summary, acknowledge button, anomalies with evidence, history."""
    incident_id = str(doc["incident_id"])
    agent_id = str(doc["agent_id"])
    ack = ""
    if doc.get("status") == "open":
        ack = (
            f'<form method="post" action="{incident_href(incident_id)}/ack" class="ack">'
            f"{csrf_field(csrf)}"
            '<label>Reason <input type="text" name="reason" value="acknowledged from the '
            'console" maxlength="1024"></label>'
            '<button type="submit" id="ack">Acknowledge</button></form>'
        )
    summary = table(
        [
            "Status",
            "Severity",
            "Agent",
            "Fleet",
            "Opened",
            "Updated",
            "Acknowledged by",
            "Anomalies",
        ],
        [
            (
                esc(doc.get("status")),
                f'<span class="sev-{esc(doc.get("severity"))}">{esc(doc.get("severity"))}</span>',
                f'<a href="{agent_href(agent_id)}" id="agent-link">{esc(agent_id)}</a>',
                esc(doc.get("fleet")),
                esc(doc.get("opened_at")),
                esc(doc.get("updated_at")),
                esc(doc.get("acknowledged_by")),
                esc(doc.get("anomaly_count")),
            )
        ],
    )
    unavailable = doc.get("evidence_unavailable")
    body = (
        f"<h1>Incident {esc(incident_id)}: {esc(doc.get('title'))}</h1>"
        + flash(done)
        + summary
        + f"<p>Control: {esc(control_line(doc.get('control')))}</p>"
        + ack
        + "<h2>Anomalies</h2>"
        + (
            flash(None, f"evidence not available for {', '.join(map(str, unavailable))}")
            if unavailable
            else ""
        )
        + anomalies_section(doc.get("anomalies") or [])
        + "<h2>Control and audit history</h2>"
        + audit_section(doc.get("audit") or [])
    )
    return layout(f"Incident {incident_id}", body, csrf=csrf, actor=actor)


# -- agents --------------------------------------------------------------------------------


def control_forms(agent_id: str, csrf: str) -> str:
    """Halt, resume, revoke and silence forms for an agent."""
    base = agent_href(agent_id)
    reason = (
        '<label>Reason <input type="text" name="reason" required maxlength="1024" '
        'value="from the console"></label>'
    )
    return (
        '<div class="actions">'
        f'<form method="post" action="{base}/halt">{csrf_field(csrf)}{reason}'
        '<button type="submit" id="halt">Halt</button></form>'
        f'<form method="post" action="{base}/resume">{csrf_field(csrf)}{reason}'
        '<button type="submit" id="resume">Resume</button></form>'
        f'<form method="post" action="{base}/revoke">{csrf_field(csrf)}'
        '<label>Permission (action) <input type="text" name="action" id="revoke-action" '
        'required maxlength="128"></label>'
        f"{reason}"
        '<button type="submit" id="revoke">Revoke</button></form>'
        f'<form method="post" action="{base}/silence">{csrf_field(csrf)}'
        '<label>Silence for <input type="text" name="duration" id="silence-duration" '
        'value="1h" required maxlength="16"></label>'
        '<label>Comment <input type="text" name="comment" id="silence-comment" required '
        'maxlength="1024"></label>'
        '<button type="submit" id="silence">Silence</button></form>'
        "</div>"
    )


def agent_page(
    agent: Mapping[str, Any],
    *,
    events: Sequence[Mapping[str, Any]],
    anomalies: Sequence[Mapping[str, Any]],
    audit: Sequence[Mapping[str, Any]],
    silences: Sequence[Mapping[str, Any]],
    csrf: str,
    actor: str,
    done: str | None,
    error: str | None = None,
) -> str:
    """An agent: control state and buttons, incident, baseline, recent events, anomalies with
    their explanations, silences that match it, control history."""
    agent_id = str(agent["agent_id"])
    incident = agent.get("incident")
    incident_line = (
        f'<p>Incident: <a href="{incident_href(str(incident["incident_id"]))}">'
        f"{esc(incident['incident_id'])}</a> ({esc(incident.get('status'))}): "
        f"{esc(incident.get('title'))}</p>"
        if isinstance(incident, Mapping)
        else "<p>No incident.</p>"
    )
    baseline_keys = {"control", "incident", "responder", "agent_id"}
    baseline = [
        (esc(k), esc(_short(v))) for k, v in flat(agent) if k.split(".")[0] not in baseline_keys
    ]
    event_rows = [
        (
            esc(e.get("event_id")),
            esc(e.get("ts")),
            esc(e.get("action")),
            esc(_short(e.get("target") or "")),
            esc(e.get("risk")),
            esc(e.get("outcome")),
            _number(e.get("cost_usd")),
            f"<details><summary>all fields</summary><pre>"
            f"{esc(orjson.dumps(e, option=orjson.OPT_INDENT_2).decode())}</pre></details>",
        )
        for e in events
    ]
    silence_rows = [
        (
            esc(s.get("silence_id")),
            esc(s.get("status")),
            esc(", ".join(s.get("matchers_text") or [])),
            esc(s.get("ends_at")),
            esc(s.get("created_by")),
            esc(s.get("comment")),
        )
        for s in silences
    ]
    body = (
        f"<h1>Agent {esc(agent_id)}</h1>"
        + flash(done, error)
        + f'<p id="control-state">Control: {esc(control_line(agent.get("control")))}</p>'
        + incident_line
        + control_forms(agent_id, csrf)
        + "<h2>Anomalies</h2>"
        + anomalies_section(anomalies)
        + "<h2>Silences matching this agent</h2>"
        + table(["Silence", "Status", "Matchers", "Ends", "By", "Comment"], silence_rows)
        + "<h2>Recent events</h2>"
        + table(
            ["Event", "Time", "Action", "Target", "Risk", "Outcome", "Cost (USD)", ""],
            event_rows,
            empty="no events held",
        )
        + "<h2>Baseline</h2>"
        + table(["Field", "Value"], baseline, empty="no baseline held")
        + "<h2>Control and audit history</h2>"
        + audit_section(audit)
    )
    return layout(f"Agent {agent_id}", body, csrf=csrf, actor=actor)
