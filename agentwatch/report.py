"""The backtest HTML report: one self-contained page (inline CSS and SVG, no scripts).

``agentwatch backtest --report report.html`` writes what :func:`render_report` returns. The page
answers the questions a person tuning thresholds asks, top to bottom:

1. **Which detectors fire, how loudly** — anomalies per detector, stacked by severity.
2. **When and on whom** — per-agent timelines (incident agents first, at most ``max_agents``)
   with incident windows, benign labels and fleet-wide changes shaded, and one mark per
   anomaly coloured by detector (hover for its summary).
3. **How far above threshold** — per detector, a histogram of ``score / threshold`` on a log
   axis with the threshold at 1.0, split into anomalies of true and false episodes when an
   evaluation is given, and how many anomalies a threshold raised by 10 %, 25 %, 50 % or 100 %
   would remove.
4. **The scores** — the :class:`~agentwatch.evaluation.Evaluation` tables.

The page has no script and references nothing outside itself; every piece of text from the
input (summaries, agent ids, label details) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentwatch.evaluation import Evaluation, FleetSummary, parse_time
from agentwatch.schemas import Anomaly

__all__ = ["DETECTOR_PALETTE", "SEVERITY_COLORS", "margin", "render_report"]

DETECTOR_PALETTE: tuple[str, ...] = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#555b66",
    "#9c755f",
    "#2f4b7c",
    "#a05195",
    "#665191",
    "#d45087",
    "#00876c",
    "#bab0ac",
)
"""Detector colours, assigned in sorted detector-name order (cycled)."""

SEVERITY_COLORS: Mapping[str, str] = {
    "info": "#9dbbd8",
    "warning": "#f2c14e",
    "error": "#e8743b",
    "critical": "#a8201a",
}
SEVERITIES: tuple[str, ...] = ("info", "warning", "error", "critical")

_TRUE_COLOR = "#4e79a7"
_FALSE_COLOR = "#e8743b"
_INCIDENT_FILL = "#e15759"
_BENIGN_FILL = "#59a14f"
_CHANGE_FILL = "#8e6bbf"
_RAISES: tuple[tuple[str, float], ...] = (("+10%", 1.1), ("+25%", 1.25), ("+50%", 1.5), ("x2", 2.0))

_CSS = """
:root { --fg:#1d2330; --muted:#667085; --line:#d0d5dd; --bg:#ffffff; --panel:#f7f8fa; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1280px; margin:0 auto; padding:20px 24px 48px; }
h1 { font-size:22px; margin:0 0 4px; }
h2 { font-size:17px; margin:32px 0 6px; padding-bottom:4px; border-bottom:1px solid var(--line); }
h3 { font-size:14px; margin:18px 0 6px; }
p.note, .muted { color:var(--muted); font-size:12.5px; margin:2px 0 8px; }
.cards { display:flex; flex-wrap:wrap; gap:10px; margin:14px 0 4px; }
.card { background:var(--panel); border:1px solid var(--line); border-radius:6px;
  padding:8px 14px; min-width:150px; }
.card .v { font-size:20px; font-weight:600; }
.card .k { font-size:12px; color:var(--muted); }
.card.bad { border-color:#e8743b; background:#fff4ee; }
.card.good { border-color:#59a14f; background:#f2f9f0; }
svg { display:block; width:100%; height:auto; font-size:11px;
  font-family:-apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
svg text { fill:#1d2330; }
svg .muted { fill:#667085; }
.legend { display:flex; flex-wrap:wrap; gap:4px 16px; font-size:12px; margin:4px 0 8px; }
.legend span.sw { display:inline-block; width:11px; height:11px; border-radius:2px;
  vertical-align:-1px; margin-right:5px; }
table { border-collapse:collapse; font-size:12.5px; margin:4px 0 12px; }
th, td { padding:3px 10px; border-bottom:1px solid #eaecf0; text-align:left;
  vertical-align:top; }
th { background:var(--panel); font-weight:600; position:sticky; top:0; }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
tr.fail td { background:#fff4ee; }
td.ok { color:#2e7d32; font-weight:600; } td.xx { color:#b3261e; font-weight:600; }
.scroll { max-height:420px; overflow:auto; border:1px solid #eaecf0; }
.cols { display:flex; flex-wrap:wrap; gap:8px 40px; align-items:flex-start; }
code { font-size:12px; }
"""


def _e(value: object) -> str:
    """HTML-escape any value (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def _f(value: float) -> str:
    """A compact coordinate."""
    return f"{value:.1f}".removesuffix(".0")


def _hm(ts: float, with_date: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M")


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def margin(anomaly: Anomaly, thresholds: Mapping[str, float] | None = None) -> float | None:
    """``score / threshold`` of one anomaly (``None`` without a positive threshold).

    The threshold is ``thresholds[anomaly.rule]``, else ``thresholds[anomaly.detector]``,
    else the anomaly's own ``threshold``.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> a = Anomaly(anomaly_id="a", ts=datetime(2026, 1, 1, tzinfo=UTC), agent_id="x",
    ...             detector="rate", kind="k", severity="info", score=3.0, threshold=2.0,
    ...             observed=3.0, baseline=1.0, summary="s")
    >>> margin(a), margin(a, {"rate": 3.0})
    (1.5, 1.0)
    """
    threshold = anomaly.threshold
    if thresholds:
        if anomaly.rule is not None and anomaly.rule in thresholds:
            threshold = thresholds[anomaly.rule]
        elif anomaly.detector in thresholds:
            threshold = thresholds[anomaly.detector]
    if not threshold > 0 or not math.isfinite(threshold):
        return None
    return anomaly.score / threshold


@dataclass(frozen=True, slots=True)
class _Lab:
    id: str
    kind: str
    agent_id: str | None
    fleet: str
    start: float
    end: float
    benign: bool
    details: str


def _labels(labels: Sequence[Mapping[str, Any]]) -> list[_Lab]:
    out: list[_Lab] = []
    for i, lab in enumerate(labels):
        start = parse_time(lab["start"])
        end = max(start, parse_time(lab.get("end", lab["start"])))
        details = lab.get("details") or {}
        text = (
            ", ".join(f"{k}={v}" for k, v in details.items())
            if isinstance(details, Mapping)
            else ""
        )
        out.append(
            _Lab(
                id=str(lab.get("id") or f"label-{i}"),
                kind=str(lab["kind"]),
                agent_id=lab.get("agent_id"),
                fleet=str(lab.get("fleet") or "default"),
                start=start,
                end=end,
                benign=bool(lab.get("benign", False)),
                details=text[:300],
            )
        )
    return out


# -- section (a): anomalies per detector and severity ------------------------------------


def _detector_chart(anomalies: Sequence[Anomaly], colors: Mapping[str, str]) -> str:
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
        f'<svg viewBox="0 0 {_f(width)} {_f(height)}" role="img" '
        f'aria-label="anomalies per detector and severity">'
    ]
    if not order:
        parts.append(f'<text x="{_f(left)}" y="24" class="muted">no anomalies</text>')
    for i, det in enumerate(order):
        y = top + i * row
        parts.append(
            f'<rect x="4" y="{_f(y + 5)}" width="10" height="10" rx="2" fill="{colors[det]}"/>'
            f'<text x="20" y="{_f(y + 14)}">{_e(det[:30])}</text>'
        )
        x = left
        for sev in SEVERITIES:
            n = counts[det][sev]
            if not n:
                continue
            w = max(1.0, n * scale)
            parts.append(
                f'<rect x="{_f(x)}" y="{_f(y + 3)}" width="{_f(w)}" height="{_f(row - 6)}" '
                f'fill="{SEVERITY_COLORS[sev]}"><title>{_e(det)}: {n} {sev}</title></rect>'
            )
            x += w
        total = sum(counts[det].values())
        parts.append(f'<text x="{_f(x + 6)}" y="{_f(y + 14)}">{total}</text>')
    y = top + row * max(1, len(order)) + 18
    x = left
    sev_totals: Counter[str] = Counter(a.severity for a in anomalies)
    for sev in SEVERITIES:
        parts.append(
            f'<rect x="{_f(x)}" y="{_f(y - 9)}" width="10" height="10" rx="2" '
            f'fill="{SEVERITY_COLORS[sev]}"/>'
            f'<text x="{_f(x + 15)}" y="{_f(y)}">{sev} {sev_totals[sev]}</text>'
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
    anomalies: Sequence[Anomaly], labs: list[_Lab], max_agents: int
) -> tuple[list[tuple[str, str]], int]:
    fleet_of: dict[str, str] = {}
    first_incident: dict[str, float] = {}
    for lab in labs:
        if lab.agent_id is None:
            continue
        fleet_of.setdefault(lab.agent_id, lab.fleet)
        if not lab.benign:
            first_incident[lab.agent_id] = min(
                first_incident.get(lab.agent_id, math.inf), lab.start
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


def _timeline(
    *,
    anomalies: Sequence[Anomaly],
    labs: list[_Lab],
    summary: FleetSummary,
    evaluation: Evaluation | None,
    colors: Mapping[str, str],
    max_agents: int,
) -> tuple[str, int, int]:
    rows, total = _timeline_rows(anomalies, labs, max_agents)
    t0, t1 = summary.start, summary.end
    if not t1 > t0:
        times = [a.ts.timestamp() for a in anomalies] + [x.start for x in labs]
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
        f'<svg viewBox="0 0 {_f(width)} {_f(height)}" role="img" aria-label="per-agent timelines">'
    ]
    # axis + grid
    step = _nice_step(t1 - t0)
    tick = math.ceil(t0 / step) * step
    bottom = top + row_h * max(1, len(rows))
    while tick <= t1:
        x = x_of(tick)
        parts.append(
            f'<line x1="{_f(x)}" y1="{_f(top - 4)}" x2="{_f(x)}" y2="{_f(bottom)}" '
            f'stroke="#eaecf0"/>'
            f'<text x="{_f(x)}" y="{_f(top - 8)}" text-anchor="middle" class="muted">'
            f"{_hm(tick)}</text>"
            f'<text x="{_f(x)}" y="{_f(bottom + 14)}" text-anchor="middle" class="muted">'
            f"{_hm(tick)}</text>"
        )
        tick += step
    by_agent_labels: dict[str, list[_Lab]] = defaultdict(list)
    changes_by_fleet: dict[str, list[_Lab]] = defaultdict(list)
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
                f'<rect x="{_f(left)}" y="{_f(y)}" width="{_f(plot_w)}" height="{_f(row_h)}" '
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
            f'<text x="4" y="{_f(y + 13)}"><title>{_e(agent)} ({_e(fleet)})'
            f"{': ' + _e(', '.join(kinds)) if kinds else ''}</title>"
            f'{_e(label)} <tspan class="muted">{_e(fleet[:12])}</tspan></text>'
        )
        if tag:
            parts.append(
                f'<text x="{_f(left - 6)}" y="{_f(y + 13)}" text-anchor="end" '
                f'fill="#b3261e" style="fill:#b3261e" font-size="10.5">{_e(tag)}</text>'
            )
        for ch in changes_by_fleet.get(fleet, ()):
            x0, x_end, x1 = x_of(ch.start), x_of(ch.end), x_of(ch.start + window)
            tip = f"benign {ch.kind} ({ch.fleet}) {_hm(ch.start)}-{_hm(ch.end)} {ch.details}"
            parts.append(
                f'<rect x="{_f(x0)}" y="{_f(y)}" width="{_f(max(x1 - x0, 1))}" '
                f'height="{_f(row_h)}" fill="{_CHANGE_FILL}" fill-opacity="0.07">'
                f"<title>{_e(tip)} (attribution window)</title></rect>"
                f'<rect x="{_f(x0)}" y="{_f(y)}" width="{_f(max(x_end - x0, 2))}" '
                f'height="{_f(row_h)}" fill="{_CHANGE_FILL}" fill-opacity="0.45">'
                f"<title>{_e(tip)}</title></rect>"
            )
        for lab in sorted(by_agent_labels.get(agent, ()), key=lambda x: x.benign, reverse=True):
            x0, x1 = x_of(lab.start), x_of(lab.end)
            w = max(x1 - x0, 2.0)
            if lab.benign:
                tip = f"benign {lab.kind} {_hm(lab.start)}-{_hm(lab.end)} {lab.details}"
                parts.append(
                    f'<rect x="{_f(x0)}" y="{_f(y + 1)}" width="{_f(w)}" '
                    f'height="{_f(row_h - 2)}" fill="{_BENIGN_FILL}" fill-opacity="0.3">'
                    f"<title>{_e(tip)}</title></rect>"
                )
                continue
            res = results.get(lab.id)
            status = ""
            stroke = ""
            if res is not None:
                status = (
                    f" detected after {_dur(res.ttd_s)} by {res.first_detector}"
                    if res.detected
                    else " MISSED"
                )
                if not res.detected:
                    stroke = ' stroke="#a8201a" stroke-dasharray="3 2" stroke-width="1.2"'
            tip = f"{lab.id} {lab.kind} {_hm(lab.start)}-{_hm(lab.end)}{status} {lab.details}"
            xg = x_of(lab.end + grace)
            parts.append(
                f'<rect x="{_f(x1)}" y="{_f(y + 1)}" width="{_f(max(xg - x1, 0))}" '
                f'height="{_f(row_h - 2)}" fill="{_INCIDENT_FILL}" fill-opacity="0.1"/>'
                f'<rect x="{_f(x0)}" y="{_f(y + 1)}" width="{_f(w)}" height="{_f(row_h - 2)}" '
                f'fill="{_INCIDENT_FILL}" fill-opacity="0.28"{stroke}>'
                f"<title>{_e(tip)}</title></rect>"
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
                f"{_hm(a.ts.timestamp(), with_date=True)} {a.detector} [{a.severity}] "
                f"score {a.score:.3g} / threshold {a.threshold:.3g}: {a.summary}{more}"
            )
            parts.append(
                f'<rect x="{_f(x - 1.5)}" y="{_f(y + 3)}" width="3" height="{_f(row_h - 6)}" '
                f'fill="{colors[det]}"><title>{_e(tip)}</title></rect>'
            )
            marks += 1
    if not rows:
        parts.append(
            f'<text x="{_f(left)}" y="{_f(top + 13)}" class="muted">nothing to show</text>'
        )
    parts.append("</svg>")
    return "".join(parts), len(rows), total


# -- section (c): score margins ----------------------------------------------------------


def _margin_panels(
    anomalies: Sequence[Anomaly],
    thresholds: Mapping[str, float] | None,
    false_ids: set[str] | None,
    colors: Mapping[str, str],
) -> str:
    per: dict[str, list[tuple[float, bool]]] = defaultdict(list)
    unusable: Counter[str] = Counter()
    for a in anomalies:
        m = margin(a, thresholds)
        if m is None or not math.isfinite(m) or m <= 0:
            unusable[a.detector] += 1
            continue
        per[a.detector].append((m, false_ids is not None and a.anomaly_id in false_ids))
    detectors = sorted(set(per) | set(unusable))
    cols, panel_w, panel_h, gap = 3, 400.0, 216.0, 16.0
    n_rows = max(1, math.ceil(len(detectors) / cols))
    width = cols * panel_w + (cols - 1) * gap
    height = n_rows * (panel_h + gap)
    parts = [
        f'<svg viewBox="0 0 {_f(width)} {_f(height)}" role="img" '
        f'aria-label="score over threshold per detector">'
    ]
    if not detectors:
        parts.append('<text x="10" y="24" class="muted">no anomalies</text>')
    nbins = 28
    for idx, det in enumerate(detectors):
        ox = (idx % cols) * (panel_w + gap)
        oy = (idx // cols) * (panel_h + gap)
        values = sorted(m for m, _ in per[det])
        note = f" (+{unusable[det]} without a threshold)" if unusable[det] else ""
        px0, px1 = ox + 34.0, ox + panel_w - 10.0
        py0, py1 = oy + 28.0, oy + panel_h - 84.0  # plot top / baseline
        parts.append(
            f'<rect x="{_f(ox)}" y="{_f(oy)}" width="{_f(panel_w)}" height="{_f(panel_h)}" '
            f'fill="#ffffff" stroke="#eaecf0"/>'
            f'<rect x="{_f(ox + 8)}" y="{_f(oy + 8)}" width="10" height="10" rx="2" '
            f'fill="{colors[det]}"/>'
            f'<text x="{_f(ox + 23)}" y="{_f(oy + 17)}" font-weight="600">{_e(det[:40])}</text>'
            f'<text x="{_f(ox + panel_w - 8)}" y="{_f(oy + 17)}" text-anchor="end" '
            f'class="muted">{len(values)} anomalies{note}</text>'
        )
        if not values:
            parts.append(
                f'<text x="{_f(px0)}" y="{_f(py0 + 30)}" class="muted">'
                f"{unusable[det]} without a positive threshold</text>"
            )
            continue
        lo = max(min(0.8, values[0]), 1e-3)
        p99 = values[min(len(values) - 1, int(0.99 * len(values)))]
        hi = min(max(4.0, p99 * 1.05), 1e4)
        # log bins with an edge exactly at 1.0 (the threshold)
        bw = (math.log10(hi) - math.log10(lo)) / nbins
        below = math.ceil(-math.log10(lo) / bw - 1e-9)
        nb = below + max(1, math.ceil(math.log10(hi) / bw - 1e-9))
        llo = -below * bw
        lhi = llo + nb * bw
        lo, hi = 10**llo, 10**lhi
        true_bins = [0] * (nb + 1)  # last bin: overflow (> hi)
        false_bins = [0] * (nb + 1)
        for m, is_false in per[det]:
            b = nb if m > hi else max(0, min(nb - 1, int((math.log10(m) - llo) / bw)))
            (false_bins if is_false else true_bins)[b] += 1
        peak = max(t + f for t, f in zip(true_bins, false_bins, strict=True))
        plot_w = px1 - px0
        bar_w = plot_w / (nb + 1)

        scale = (plot_w - bar_w) / (lhi - llo)

        def bx(m: float, _o: float = px0, _l: float = llo, _s: float = scale) -> float:
            return _o + (math.log10(m) - _l) * _s

        for b in range(nb + 1):
            x = px0 + b * bar_w
            y = py1
            lo_edge = 10 ** (llo + b * bw)
            hi_edge = 10 ** (llo + (b + 1) * bw)
            span = f"> {hi:.3g}" if b == nb else f"{lo_edge:.3g}-{hi_edge:.3g}"
            for count, color, what in (
                (true_bins[b], colors[det] if false_ids is None else _TRUE_COLOR, "true"),
                (false_bins[b], _FALSE_COLOR, "false"),
            ):
                if not count:
                    continue
                h = count / peak * (py1 - py0)
                y -= h
                label = "" if false_ids is None else f" in {what} episodes"
                parts.append(
                    f'<rect x="{_f(x + 0.5)}" y="{_f(y)}" width="{_f(bar_w - 1)}" '
                    f'height="{_f(h)}" fill="{color}">'
                    f"<title>margin {span}: {count} anomalies{label}</title></rect>"
                )
        # axes and ticks
        parts.append(
            f'<line x1="{_f(px0)}" y1="{_f(py1)}" x2="{_f(px1)}" y2="{_f(py1)}" stroke="#98a2b3"/>'
            f'<text x="{_f(px0 - 4)}" y="{_f(py0 + 8)}" text-anchor="end" class="muted">'
            f"{peak}</text>"
            f'<text x="{_f(px0 - 4)}" y="{_f(py1)}" text-anchor="end" class="muted">0</text>'
            f'<text x="{_f(px1 - 4)}" y="{_f(py1 + 12)}" text-anchor="middle" class="muted">'
            f"&gt;</text>"
        )
        last_x = -1e9
        for t in (0.1, 0.2, 0.5, 0.8, 1, 1.25, 1.5, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000):
            if not lo <= t <= hi:
                continue
            x = bx(t)
            if x - last_x < 26 or x > px1 - bar_w - 8:
                continue
            last_x = x
            parts.append(
                f'<line x1="{_f(x)}" y1="{_f(py1)}" x2="{_f(x)}" y2="{_f(py1 + 3)}" '
                f'stroke="#98a2b3"/>'
                f'<text x="{_f(x)}" y="{_f(py1 + 13)}" text-anchor="middle" class="muted">'
                f"{t:g}</text>"
            )
        tx = bx(1.0) if lo <= 1.0 <= hi else px0
        parts.append(
            f'<line x1="{_f(tx)}" y1="{_f(py0 - 4)}" x2="{_f(tx)}" y2="{_f(py1)}" '
            f'stroke="#1d2330" stroke-dasharray="4 3" stroke-width="1.3"/>'
            f'<text x="{_f(tx + 3)}" y="{_f(py0 + 2)}" font-size="10" stroke="#fff" '
            f'stroke-width="3" paint-order="stroke">threshold</text>'
        )
        # what raising the threshold would remove
        n = len(values)
        ytxt = py1 + 28
        labels = ["score / threshold (log)", "raise threshold by", "removes anomalies"]
        if false_ids is not None:
            labels.append("… of false episodes")
        for j, text in enumerate(labels):
            parts.append(
                f'<text x="{_f(ox + 8)}" y="{_f(ytxt + 14 * j)}" class="muted">{text}</text>'
            )
        x = ox + 170
        for name, factor in _RAISES:
            gone = [f for m, f in per[det] if m < factor]
            tip = f"a threshold {factor:g} times higher removes {len(gone)} of {n} anomalies"
            parts.append(
                f'<text x="{_f(x)}" y="{_f(ytxt + 14)}" text-anchor="middle">{_e(name)}</text>'
                f'<text x="{_f(x)}" y="{_f(ytxt + 28)}" text-anchor="middle">'
                f"<title>{_e(tip)}</title>{len(gone)} "
                f'<tspan class="muted">({len(gone) / n:.0%})</tspan></text>'
            )
            if false_ids is not None:
                parts.append(
                    f'<text x="{_f(x)}" y="{_f(ytxt + 42)}" text-anchor="middle" '
                    f'fill="{_FALSE_COLOR}" style="fill:{_FALSE_COLOR}">{sum(gone)}</text>'
                )
            x += 60
    parts.append("</svg>")
    return "".join(parts)


# -- section (d): evaluation tables -------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: set[int]) -> str:
    head = "".join(
        f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _evaluation_html(ev: Evaluation) -> str:
    out: list[str] = []
    checks = ev.check()
    out.append("<h3>Targets</h3>")
    rows = "".join(
        f'<tr{"" if c.ok else " class=fail"}><td class="{"ok" if c.ok else "xx"}">'
        f"{'ok' if c.ok else 'FAIL'}</td><td>{_e(c.name)}</td><td>{_e(c.detail)}</td></tr>"
        for c in checks
    )
    out.append(
        f"<table><thead><tr><th></th><th>target</th><th>value</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    kind_rows: list[list[object]] = [
        [
            k.kind,
            k.incidents,
            k.detected,
            _pct(k.recall),
            _dur(k.median_ttd_s),
            _dur(k.p90_ttd_s),
            _dur(k.max_ttd_s),
        ]
        for k in ev.kinds
    ]
    kind_rows.append(
        ["all", len(ev.incidents), ev.detected, _pct(ev.recall), _dur(ev.median_ttd_s), "", ""]
    )
    benign = ev.benign_change_episodes
    benign_rows: list[list[object]] = [[k, v] for k, v in benign.items()]
    benign_rows += [[f"{k} (per agent)", v] for k, v in ev.benign_agent_episodes.items()]
    ep_rows: list[list[object]] = [
        ["episodes", len(ev.episodes)],
        ["true", ev.true_episodes],
        ["false", ev.false_episodes],
        ["false / 100 agent-hours", f"{ev.false_per_100_agent_hours:.2f}"],
        ["precision", _pct(ev.precision)],
        ["from benign fleet-wide changes", ev.benign_change_total],
    ]
    ep_rows += [[f"false in fleet {k}", v] for k, v in ev.false_by_fleet.items()]
    out.append('<div class="cols"><div><h3>Recall and time to detect</h3>')
    out.append(
        _table(
            ["incident kind", "incidents", "detected", "recall", "median TTD", "p90 TTD", "max"],
            kind_rows,
            {1, 2, 3, 4, 5, 6},
        )
    )
    out.append("</div><div><h3>Episodes</h3>")
    out.append(_table(["", ""], ep_rows, {1}))
    if benign_rows:
        out.append("<h3>False episodes on benign labels</h3>")
        out.append(_table(["benign label", "false episodes"], benign_rows, {1}))
    out.append("</div></div>")
    out.append("<h3>Per detector</h3>")
    out.append(
        _table(
            [
                "detector",
                "anomalies",
                "incidents flagged",
                "flagged first",
                "true episodes",
                "false episodes",
                "only-detector false",
                "false / 100 agent-h",
            ],
            [
                [
                    d.detector,
                    d.anomalies,
                    d.incidents_detected,
                    d.first_detections,
                    d.true_episodes,
                    d.false_episodes,
                    d.sole_false_episodes,
                    f"{d.false_per_100_agent_hours:.2f}",
                ]
                for d in ev.detectors
            ],
            {1, 2, 3, 4, 5, 6, 7},
        )
    )
    out.append(
        '<p class="note">A false episode counts for every detector that took part in it; '
        "“only-detector” false episodes disappear if that detector alone is silenced.</p>"
    )
    out.append(f"<h3>Incidents ({len(ev.incidents)})</h3>")
    out.append('<div class="scroll">')
    out.append(
        _table(
            ["id", "kind", "agent", "start", "detected", "TTD", "first detector", "detectors"],
            [
                [
                    r.id,
                    r.kind,
                    r.agent_id,
                    _hm(r.start, with_date=True),
                    "yes" if r.detected else "MISSED",
                    _dur(r.ttd_s),
                    r.first_detector or "-",
                    ", ".join(r.detectors),
                ]
                for r in sorted(ev.incidents, key=lambda r: (r.detected, r.start))
            ],
            {5},
        )
    )
    out.append("</div>")
    false = sorted(
        (e for e in ev.episodes if not e.true), key=lambda e: (-e.anomalies, e.start, e.agent_id)
    )
    cap = 100
    out.append(
        f"<h3>False episodes ({len(false)}{f', largest {cap} shown' if len(false) > cap else ''})"
        "</h3>"
    )
    if false:
        out.append('<div class="scroll">')
        out.append(
            _table(
                ["agent", "fleet", "start", "duration", "anomalies", "detectors", "benign cause"],
                [
                    [
                        e.agent_id,
                        e.fleet,
                        _hm(e.start, with_date=True),
                        _dur(e.end - e.start),
                        e.anomalies,
                        ", ".join(e.detectors),
                        ", ".join(e.benign_causes) or "-",
                    ]
                    for e in false[:cap]
                ],
                {3, 4},
            )
        )
        out.append("</div>")
    else:
        out.append('<p class="note">none</p>')
    return "".join(out)


# -- page ---------------------------------------------------------------------------------


def _card(value: str, key: str, state: str = "") -> str:
    cls = f"card {state}".strip()
    return (
        f'<div class="{cls}"><div class="v">{_e(value)}</div><div class="k">{_e(key)}</div></div>'
    )


def render_report(
    anomalies: Sequence[Anomaly],
    labels: Sequence[Mapping[str, Any]],
    summary: FleetSummary,
    evaluation: Evaluation | None,
    *,
    thresholds: Mapping[str, float] | None = None,
    title: str = "agentwatch backtest",
    max_agents: int = 60,
) -> str:
    """Render one self-contained HTML page about a backtest.

    Parameters
    ----------
    anomalies
        The backtest's anomalies.
    labels
        Simulator labels (may be empty); incident and benign windows are shaded on the
        timelines.
    summary
        Agents and event-time span of the replayed events (the timelines' time axis).
    evaluation
        The :func:`~agentwatch.evaluation.evaluate` result, or ``None`` (no tables, no
        true/false split in the histograms).
    thresholds
        Thresholds to measure margins against, by rule name or detector name (see
        :func:`margin`); by default each anomaly's own ``threshold``.
    title
        Page title.
    max_agents
        At most this many timelines (agents with incidents first, then by anomaly count).

    Returns
    -------
    str
        The HTML document.

    Examples
    --------
    >>> page = render_report([], [], FleetSummary(agents=1, start=0.0, end=60.0), None)
    >>> page.startswith("<!DOCTYPE html>") and "</html>" in page
    True
    """
    labs = _labels(labels)
    detectors = sorted({a.detector for a in anomalies})
    colors = {d: DETECTOR_PALETTE[i % len(DETECTOR_PALETTE)] for i, d in enumerate(detectors)}
    false_ids: set[str] | None = None
    if evaluation is not None:
        false_ids = {i for e in evaluation.episodes if not e.true for i in e.anomaly_ids}

    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
    )
    parts = [head, f"<h1>{_e(title)}</h1>"]
    fleets = ", ".join(f"{k} {v}" for k, v in summary.agents_by_fleet.items())
    parts.append(
        f'<p class="note">{summary.agents} agents{f" ({_e(fleets)})" if fleets else ""} · '
        f"{_e(_hm(summary.start, True))} &#8211; {_e(_hm(summary.end, True))} UTC "
        f"({summary.hours:.2f} h, {summary.agent_hours:.0f} agent-hours) · "
        f"{len(anomalies)} anomalies from {len(detectors)} detectors · "
        f"{sum(1 for x in labs if not x.benign and x.agent_id)} labelled incidents</p>"
    )
    cards = [_card(str(len(anomalies)), "anomalies")]
    if evaluation is not None:
        checks = {c.name: c.ok for c in evaluation.check()}
        ok = all(checks.values())

        def st(name: str) -> str:
            return "" if name not in checks else ("good" if checks[name] else "bad")

        cards += [
            _card("PASS" if ok else "FAIL", "targets", "good" if ok else "bad"),
            _card(
                f"{evaluation.detected}/{len(evaluation.incidents)} ({_pct(evaluation.recall)})",
                "incidents detected",
                st("recall"),
            ),
            _card(_dur(evaluation.median_ttd_s), "median time to detect"),
            _card(
                f"{evaluation.false_per_100_agent_hours:.2f}",
                f"false episodes / 100 agent-h ({evaluation.false_episodes})",
                st("false episodes / 100 agent-h"),
            ),
            _card(_pct(evaluation.precision), "episode precision"),
            _card(
                str(evaluation.benign_change_total),
                "episodes from benign changes",
                st("benign-change episodes"),
            ),
        ]
    parts.append(f'<div class="cards">{"".join(cards)}</div>')

    # (a)
    parts.append('<section id="detectors"><h2>Anomalies by detector and severity</h2>')
    parts.append(_detector_chart(anomalies, colors))
    parts.append("</section>")

    # (b)
    svg, shown, total = _timeline(
        anomalies=anomalies,
        labs=labs,
        summary=summary,
        evaluation=evaluation,
        colors=colors,
        max_agents=max_agents,
    )
    parts.append('<section id="timelines"><h2>Agent timelines</h2>')
    legend = "".join(
        f'<span><span class="sw" style="background:{colors[d]}"></span>{_e(d)}</span>'
        for d in detectors
    )
    legend += (
        f'<span><span class="sw" style="background:{_INCIDENT_FILL};opacity:.45"></span>'
        f"incident (lighter: +grace)</span>"
        f'<span><span class="sw" style="background:{_BENIGN_FILL};opacity:.45"></span>'
        f"benign per-agent label</span>"
        f'<span><span class="sw" style="background:{_CHANGE_FILL};opacity:.6"></span>'
        f"benign fleet-wide change (faint: attribution window)</span>"
    )
    parts.append(
        f'<p class="note">{shown} of {total} agents with anomalies or incidents '
        f"(incident agents first, then by anomaly count). Hover a mark for its summary.</p>"
        f'<div class="legend">{legend}</div>'
    )
    parts.append(svg)
    parts.append("</section>")

    # (c)
    parts.append('<section id="margins"><h2>Score over threshold</h2>')
    split = (
        f' Bars: <span style="color:{_TRUE_COLOR}">■</span> anomalies of true episodes, '
        f'<span style="color:{_FALSE_COLOR}">■</span> of false episodes; '
        "the last row counts the false ones a raise would remove."
        if evaluation is not None
        else ""
    )
    parts.append(
        '<p class="note">Per detector, how far each anomaly\'s score was above its threshold '
        "(1.0 = exactly at the threshold). Anomalies left of 1.1 disappear if the threshold is "
        f"raised by 10%, and so on.{split}</p>"
    )
    parts.append(_margin_panels(anomalies, thresholds, false_ids, colors))
    parts.append("</section>")

    # (d)
    if evaluation is not None:
        parts.append('<section id="evaluation"><h2>Evaluation</h2>')
        parts.append(
            f'<p class="note">grace {evaluation.grace_s:g}s after an incident ends; anomalies '
            f"of one agent less than {evaluation.episode_gap_s:g}s apart form one episode; "
            f"false episodes starting within {evaluation.change_window_s:g}s of a benign "
            "fleet-wide change in their fleet are blamed on it.</p>"
        )
        parts.append(_evaluation_html(evaluation))
        parts.append("</section>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
