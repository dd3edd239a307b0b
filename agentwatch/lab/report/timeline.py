"""Report sections (a) and (b): anomalies per detector and severity, per-agent timelines."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from agentwatch.lab.evaluation import Evaluation, FleetSummary
from agentwatch.lab.labels import Label
from agentwatch.lab.report.style import (
    BENIGN_FILL,
    CHANGE_FILL,
    INCIDENT_FILL,
    SEVERITIES,
    SEVERITY_COLORS,
    dur,
    esc,
    hm,
    num,
)
from agentwatch.schemas import Anomaly

__all__ = ["details_text", "detector_chart", "timeline"]


def details_text(lab: Label) -> str:
    """A label's parameters as ``key=value, ...`` (at most 300 characters)."""
    return ", ".join(f"{k}={v}" for k, v in lab.params.items())[:300]


def detector_chart(anomalies: Sequence[Anomaly], colors: Mapping[str, str]) -> str:
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for a in anomalies:
        counts[a.detector][a.severity] += 1
    order = sorted(counts, key=lambda d: (-sum(counts[d].values()), d))
    width, left, right, row = 1240.0, 200.0, 90.0, 22.0
    top = 8.0
    height = top + row * max(1, len(order)) + 30
    total_max = max((sum(c.values()) for c in counts.values()), default=1)
    scale = (width - left - right) / max(1, total_max)
    parts = [
        f'<svg viewBox="0 0 {num(width)} {num(height)}" role="img" '
        f'aria-label="anomalies per detector and severity">'
    ]
    if not order:
        parts.append(f'<text x="{num(left)}" y="24" class="muted">no anomalies</text>')
    for i, det in enumerate(order):
        y = top + i * row
        parts.append(
            f'<rect x="4" y="{num(y + 5)}" width="10" height="10" rx="2" fill="{colors[det]}"/>'
            f'<text x="20" y="{num(y + 14)}">{esc(det[:30])}</text>'
        )
        x = left
        for sev in SEVERITIES:
            n = counts[det][sev]
            if not n:
                continue
            w = max(1.0, n * scale)
            parts.append(
                f'<rect x="{num(x)}" y="{num(y + 3)}" width="{num(w)}" height="{num(row - 6)}" '
                f'fill="{SEVERITY_COLORS[sev]}"><title>{esc(det)}: {n} {sev}</title></rect>'
            )
            x += w
        total = sum(counts[det].values())
        parts.append(f'<text x="{num(x + 6)}" y="{num(y + 14)}">{total}</text>')
    y = top + row * max(1, len(order)) + 18
    x = left
    sev_totals: Counter[str] = Counter(a.severity for a in anomalies)
    for sev in SEVERITIES:
        parts.append(
            f'<rect x="{num(x)}" y="{num(y - 9)}" width="10" height="10" rx="2" '
            f'fill="{SEVERITY_COLORS[sev]}"/>'
            f'<text x="{num(x + 15)}" y="{num(y)}">{sev} {sev_totals[sev]}</text>'
        )
        x += 130
    parts.append("</svg>")
    return "".join(parts)


# -- section (b): timelines ---------------------------------------------------------------


def _nice_step(span_s: float, target: int = 10) -> float:
    steps = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
    for step in steps:
        if span_s / step <= target:
            return float(step)
    return float(math.ceil(span_s / target / 86400) * 86400)


def _timeline_rows(
    anomalies: Sequence[Anomaly], labs: list[Label], max_agents: int
) -> tuple[list[tuple[str, str]], int]:
    fleet_of: dict[str, str] = {}
    first_incident: dict[str, float] = {}
    for lab in labs:
        if lab.agent_id is None:
            continue
        fleet_of.setdefault(lab.agent_id, lab.fleet)
        if not lab.benign:
            first_incident[lab.agent_id] = min(
                first_incident.get(lab.agent_id, math.inf), lab.start_s
            )
    per_agent = Counter(a.agent_id for a in anomalies)
    first_anomaly: dict[str, float] = {}
    for a in anomalies:
        fleet_of.setdefault(a.agent_id, a.fleet)
        ts = a.ts.timestamp()
        first_anomaly[a.agent_id] = min(first_anomaly.get(a.agent_id, math.inf), ts)
    incident_agents = sorted(first_incident, key=lambda g: (first_incident[g], g))
    others = sorted(
        (g for g in per_agent if g not in first_incident),
        key=lambda g: (-per_agent[g], first_anomaly[g], g),
    )
    agents = incident_agents + others
    return [(g, fleet_of[g]) for g in agents[:max_agents]], len(agents)


def timeline(
    *,
    anomalies: Sequence[Anomaly],
    labs: list[Label],
    summary: FleetSummary,
    evaluation: Evaluation | None,
    colors: Mapping[str, str],
    max_agents: int,
) -> tuple[str, int, int]:
    rows, total = _timeline_rows(anomalies, labs, max_agents)
    t0, t1 = summary.start, summary.end
    if not t1 > t0:
        times = [a.ts.timestamp() for a in anomalies] + [x.start_s for x in labs]
        t0 = min(times, default=t0)
        t1 = max(times, default=t0) + 60.0
    width, left, right, row_h, top = 1240.0, 300.0, 16.0, 18.0, 26.0
    plot_w = width - left - right
    height = top + row_h * max(1, len(rows)) + 24

    def x_of(ts: float) -> float:
        return left + (min(max(ts, t0), t1) - t0) / (t1 - t0) * plot_w

    grace = evaluation.grace_s if evaluation is not None else 300.0
    window = evaluation.change_window_s if evaluation is not None else 7200.0
    results = {r.id: r for r in evaluation.incidents} if evaluation is not None else {}
    parts = [
        f'<svg viewBox="0 0 {num(width)} {num(height)}" role="img" '
        'aria-label="per-agent timelines">'
    ]
    # axis + grid
    step = _nice_step(t1 - t0)
    tick = math.ceil(t0 / step) * step
    bottom = top + row_h * max(1, len(rows))
    while tick <= t1:
        x = x_of(tick)
        parts.append(
            f'<line x1="{num(x)}" y1="{num(top - 4)}" x2="{num(x)}" y2="{num(bottom)}" '
            f'stroke="#eaecf0"/>'
            f'<text x="{num(x)}" y="{num(top - 8)}" text-anchor="middle" class="muted">'
            f"{hm(tick)}</text>"
            f'<text x="{num(x)}" y="{num(bottom + 14)}" text-anchor="middle" class="muted">'
            f"{hm(tick)}</text>"
        )
        tick += step
    by_agent_labels: dict[str, list[Label]] = defaultdict(list)
    changes_by_fleet: dict[str, list[Label]] = defaultdict(list)
    for lab in labs:
        if lab.agent_id is None:
            if lab.benign:
                changes_by_fleet[lab.fleet].append(lab)
        else:
            by_agent_labels[lab.agent_id].append(lab)
    by_agent_anoms: dict[str, list[Anomaly]] = defaultdict(list)
    for a in anomalies:
        by_agent_anoms[a.agent_id].append(a)
    marks = 0
    for i, (agent, fleet) in enumerate(rows):
        y = top + i * row_h
        if i % 2:
            parts.append(
                f'<rect x="{num(left)}" y="{num(y)}" width="{num(plot_w)}" height="{num(row_h)}" '
                f'fill="#f7f8fa"/>'
            )
        label = agent if len(agent) <= 22 else agent[:21] + "…"
        kinds = []
        for lab in by_agent_labels.get(agent, ()):
            if not lab.benign:
                res = results.get(lab.id)
                missed = res is not None and not res.detected
                kinds.append(f"{lab.kind} (missed)" if missed else lab.kind)
        tag = ", ".join(dict.fromkeys(kinds))
        tag = tag if len(tag) <= 30 else tag[:29] + "…"
        parts.append(
            f'<text x="4" y="{num(y + 13)}"><title>{esc(agent)} ({esc(fleet)})'
            f"{': ' + esc(', '.join(kinds)) if kinds else ''}</title>"
            f'{esc(label)} <tspan class="muted">{esc(fleet[:12])}</tspan></text>'
        )
        if tag:
            parts.append(
                f'<text x="{num(left - 6)}" y="{num(y + 13)}" text-anchor="end" '
                f'fill="#b3261e" style="fill:#b3261e" font-size="10.5">{esc(tag)}</text>'
            )
        for ch in changes_by_fleet.get(fleet, ()):
            x0, x_end, x1 = x_of(ch.start_s), x_of(ch.end_s), x_of(ch.start_s + window)
            tip = (
                f"benign {ch.kind} ({ch.fleet}) {hm(ch.start_s)}-{hm(ch.end_s)} {details_text(ch)}"
            )
            parts.append(
                f'<rect x="{num(x0)}" y="{num(y)}" width="{num(max(x1 - x0, 1))}" '
                f'height="{num(row_h)}" fill="{CHANGE_FILL}" fill-opacity="0.07">'
                f"<title>{esc(tip)} (attribution window)</title></rect>"
                f'<rect x="{num(x0)}" y="{num(y)}" width="{num(max(x_end - x0, 2))}" '
                f'height="{num(row_h)}" fill="{CHANGE_FILL}" fill-opacity="0.45">'
                f"<title>{esc(tip)}</title></rect>"
            )
        for lab in sorted(by_agent_labels.get(agent, ()), key=lambda x: x.benign, reverse=True):
            x0, x1 = x_of(lab.start_s), x_of(lab.end_s)
            w = max(x1 - x0, 2.0)
            if lab.benign:
                tip = f"benign {lab.kind} {hm(lab.start_s)}-{hm(lab.end_s)} {details_text(lab)}"
                parts.append(
                    f'<rect x="{num(x0)}" y="{num(y + 1)}" width="{num(w)}" '
                    f'height="{num(row_h - 2)}" fill="{BENIGN_FILL}" fill-opacity="0.3">'
                    f"<title>{esc(tip)}</title></rect>"
                )
                continue
            res = results.get(lab.id)
            status = ""
            stroke = ""
            if res is not None:
                status = (
                    f" detected after {dur(res.ttd_s)} by {res.first_detector}"
                    if res.detected
                    else " MISSED"
                )
                if not res.detected:
                    stroke = ' stroke="#a8201a" stroke-dasharray="3 2" stroke-width="1.2"'
            tip = (
                f"{lab.id} {lab.kind} {hm(lab.start_s)}-{hm(lab.end_s)}{status} {details_text(lab)}"
            )
            xg = x_of(lab.end_s + grace)
            parts.append(
                f'<rect x="{num(x1)}" y="{num(y + 1)}" width="{num(max(xg - x1, 0))}" '
                f'height="{num(row_h - 2)}" fill="{INCIDENT_FILL}" fill-opacity="0.1"/>'
                f'<rect x="{num(x0)}" y="{num(y + 1)}" width="{num(w)}" height="{num(row_h - 2)}" '
                f'fill="{INCIDENT_FILL}" fill-opacity="0.28"{stroke}>'
                f"<title>{esc(tip)}</title></rect>"
            )
        # anomaly marks, merged per detector within 2 px
        buckets: dict[tuple[str, int], list[Anomaly]] = {}
        for a in sorted(by_agent_anoms.get(agent, ()), key=lambda a: a.ts):
            key = (a.detector, int(x_of(a.ts.timestamp()) / 2))
            buckets.setdefault(key, []).append(a)
        for (det, _), group in buckets.items():
            a = group[0]
            x = x_of(a.ts.timestamp())
            more = f" (+{len(group) - 1} more here)" if len(group) > 1 else ""
            tip = (
                f"{hm(a.ts.timestamp(), with_date=True)} {a.detector} [{a.severity}] "
                f"score {a.score:.3g} / threshold {a.threshold:.3g}: {a.summary}{more}"
            )
            parts.append(
                f'<rect x="{num(x - 1.5)}" y="{num(y + 3)}" width="3" height="{num(row_h - 6)}" '
                f'fill="{colors[det]}"><title>{esc(tip)}</title></rect>'
            )
            marks += 1
    if not rows:
        parts.append(
            f'<text x="{num(left)}" y="{num(top + 13)}" class="muted">nothing to show</text>'
        )
    parts.append("</svg>")
    return "".join(parts), len(rows), total
