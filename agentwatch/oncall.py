"""What the CLI prints for on-call: incidents with their evidence, anomalies, audit, silences.

Pure text rendering of the control API's JSON answers: tables with a header row, one line per
record, cut to a readable width. ``--json`` prints the answers as they are instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = [
    "anomalies_table",
    "audit_table",
    "incident_text",
    "parse_when",
    "silences_table",
    "table",
]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, max_width: int = 60) -> str:
    """A plain-text table: a header row, then one row per record, columns padded.

    Examples
    --------
    >>> print(table(["A", "BB"], [["x", 1], ["long", None]]))
    A     BB
    x     1
    long  -
    """
    cells = [[_cell(v, max_width) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any, max_width: int) -> str:
    if value is None or value in ("", []):
        return "-"
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, list):
        text = ",".join(map(str, value))
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= max_width else text[: max_width - 1] + "…"


def _time(value: Any) -> str:
    text = str(value or "")
    return text.replace("T", " ")[:19] if text else "-"


def _muted(record: dict[str, Any]) -> str:
    ids = [*record.get("silenced_by", []), *record.get("inhibited_by", [])]
    return ",".join(ids) if ids else "no"


def anomalies_table(records: Sequence[dict[str, Any]], *, agent_column: bool = True) -> str:
    """Anomalies: time, agent, rule, severity, observed vs baseline, score vs threshold."""
    headers = ["TIME", "AGENT", "RULE", "SEVERITY", "OBSERVED", "BASELINE", "SCORE", "THRESHOLD"]
    headers += ["MUTED BY", "SUMMARY"]
    rows = [
        [
            _time(r.get("ts")),
            r.get("agent_id"),
            r.get("rule") or r.get("detector"),
            r.get("severity"),
            r.get("observed"),
            r.get("baseline"),
            r.get("score"),
            r.get("threshold"),
            _muted(r) if "silenced_by" in r else "-",
            r.get("summary"),
        ]
        for r in records
    ]
    if not agent_column:
        headers.pop(1)
        for row in rows:
            row.pop(1)
    return table(headers, rows, max_width=120)


def evidence_table(records: Sequence[dict[str, Any]]) -> str:
    """Every evidence event of ``records``: held ones with their fields, the others marked."""
    rows = []
    for r in records:
        for item in r.get("evidence_events", []):
            event = item.get("event") or {}
            held = {True: "yes", False: "no longer held", None: "unavailable"}[item.get("held")]
            rows.append(
                [
                    r.get("anomaly_id"),
                    item.get("event_id"),
                    held,
                    _time(event.get("ts")) if event else "-",
                    event.get("action"),
                    event.get("status"),
                    event.get("risk"),
                    event.get("target") or event.get("error"),
                ]
            )
    headers = ["ANOMALY", "EVENT", "HELD", "TIME", "ACTION", "STATUS", "RISK", "TARGET/ERROR"]
    return table(headers, rows)


def audit_table(entries: Sequence[dict[str, Any]], *, agent_column: bool = True) -> str:
    """Audit entries: time, agent, action, actor, reason."""
    headers = ["TIME", "AGENT", "ACTION", "ACTOR", "INCIDENT", "REASON"]
    rows = [
        [
            _time(e.get("ts")),
            e.get("agent_id"),
            str(e.get("action")) + (" (dry run)" if e.get("dry_run") else ""),
            f"{e.get('actor')} ({e.get('actor_kind')})",
            e.get("incident_id"),
            e.get("reason"),
        ]
        for e in entries
    ]
    if not agent_column:
        headers.pop(1)
        for row in rows:
            row.pop(1)
    return table(headers, rows)


def silences_table(silences: Sequence[dict[str, Any]]) -> str:
    """Silences: id, status, start, end, creator, matchers, comment."""
    headers = ["SILENCE", "STATUS", "STARTS", "ENDS", "CREATED BY", "MATCHERS", "COMMENT"]
    rows = [
        [
            s["silence_id"],
            s.get("status"),
            _time(s.get("starts_at")),
            _time(s.get("ends_at")),
            s.get("created_by"),
            " ".join(s.get("matchers_text") or []),
            s.get("comment"),
        ]
        for s in silences
    ]
    return table(headers, rows, max_width=80)


def incident_text(doc: dict[str, Any]) -> str:
    """An incident for on-call: what, the anomalies with numbers, evidence, control, history."""
    lines = [
        f"incident {doc['incident_id']} [{doc['status']}, {doc['severity']}] {doc['title']}",
        f"agent {doc['agent_id']} (fleet {doc.get('fleet', 'default')}); opened "
        f"{_time(doc.get('opened_at'))}, updated {_time(doc.get('updated_at'))}; "
        f"{doc.get('anomaly_count', 0)} anomalies",
    ]
    if doc.get("acknowledged_by"):
        lines.append(f"acknowledged by {doc['acknowledged_by']}")
    if doc.get("resolved_by"):
        lines.append(f"resolved by {doc['resolved_by']} at {_time(doc.get('resolved_at'))}")
    if doc.get("muted_by"):
        lines.append(f"last page muted by {', '.join(doc['muted_by'])}")
    control = doc.get("control")
    if control:
        state = "HALTED" if control.get("halted") else "running"
        revoked = ", ".join(control.get("revoked") or []) or "-"
        lines.append(
            f"control: {state}; revoked: {revoked}; version {control.get('version')} by "
            f"{control.get('updated_by')}: {control.get('reason') or '-'}"
        )
    else:
        lines.append("control: running (no control changes)")
    anomalies = doc.get("anomalies") or []
    lines += ["", f"ANOMALIES ({len(anomalies)} kept)"]
    lines.append(anomalies_table(anomalies, agent_column=False) if anomalies else "none kept")
    lines += ["", "EVIDENCE"]
    if any(a.get("evidence_events") for a in anomalies):
        lines.append(evidence_table(anomalies))
    else:
        lines.append("no evidence ids")
    if doc.get("evidence_unavailable"):
        lines.append(
            "the worker holding the recent events of "
            f"{', '.join(doc['evidence_unavailable'])} did not answer"
        )
    audit = doc.get("audit")
    if audit is not None:
        lines += ["", "CONTROL AND AUDIT HISTORY"]
        lines.append(audit_table(audit, agent_column=False) if audit else "none kept")
    return "\n".join(lines)


def parse_when(value: str, now: datetime) -> datetime:
    """A time for ``--start``/``--end``: ISO 8601 (UTC when no zone), ``now``, or ``+2h``
    (a duration from ``now``).

    Raises
    ------
    ValueError
        for anything else.

    Examples
    --------
    >>> now = datetime(2026, 1, 1, tzinfo=UTC)
    >>> parse_when("+90m", now).isoformat(), parse_when("2026-01-02T03:00", now).hour
    ('2026-01-01T01:30:00+00:00', 3)
    """
    from agentwatch.detectors.rules import parse_duration

    text = value.strip()
    if text == "now":
        return now
    if text.startswith("+"):
        return now + timedelta(seconds=parse_duration(text[1:]))
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a time: use 2026-01-01T03:00:00Z, now, or +2h (from now)"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
