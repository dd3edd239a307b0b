"""The backtest HTML report: one self-contained page (inline CSS and SVG, no scripts).

``agentwatch backtest --report report.html`` writes what :func:`render_report` returns. The page
answers the questions a person tuning thresholds asks, top to bottom:

1. **Which detectors fire, how loudly** — anomalies per detector, stacked by severity.
2. **When and on whom** — per-agent timelines (incident agents first, at most ``max_agents``)
   with incident windows, benign labels and fleet-wide changes shaded, and one mark per
   anomaly coloured by detector (hover for its summary).
3. **How far above threshold** — per detector, a histogram of ``score / threshold`` on a log
   axis with the threshold at 1.0, split into anomalies of true and false episodes when an
   evaluation is given.
4. **What if a rule were stricter** — per rule, the figures of the backtest re-run with that
   rule's thresholds 10 %, 25 %, 50 % and 100 % stricter (when a :class:`~agentwatch.lab.
   whatif.WhatIf` is given): measured, not estimated from the histograms.
5. **The scores** — the :class:`~agentwatch.lab.evaluation.Evaluation` tables.

The header records the rules file and its SHA-256 when given.

The page has no script and references nothing outside itself; every piece of text from the
input (summaries, agent ids, label details) is HTML-escaped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agentwatch.lab.evaluation import Evaluation, FleetSummary
from agentwatch.lab.labels import Label
from agentwatch.lab.report.margins import margin_panels
from agentwatch.lab.report.style import (
    BENIGN_FILL,
    CHANGE_FILL,
    CSS,
    DETECTOR_PALETTE,
    FALSE_COLOR,
    INCIDENT_FILL,
    TRUE_COLOR,
    dur,
    esc,
    hm,
    pct,
)
from agentwatch.lab.report.timeline import detector_chart, timeline
from agentwatch.lab.report.whatif import whatif_html
from agentwatch.lab.whatif import WhatIf
from agentwatch.schemas import Anomaly

__all__ = ["render_report"]


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric: set[int]) -> str:
    head = "".join(
        f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{esc(c)}</td>' if i in numeric else f"<td>{esc(c)}</td>"
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
        f"{'ok' if c.ok else 'FAIL'}</td><td>{esc(c.name)}</td><td>{esc(c.detail)}</td></tr>"
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
            pct(k.recall),
            dur(k.median_ttd_s),
            dur(k.p90_ttd_s),
            dur(k.max_ttd_s),
            dur(k.median_after_evidence_s),
        ]
        for k in ev.kinds
    ]
    kind_rows.append(
        ["all", len(ev.incidents), ev.detected, pct(ev.recall), dur(ev.median_ttd_s), "", "", ""]
    )
    benign = ev.benign_change_episodes
    benign_rows: list[list[object]] = [[k, v] for k, v in benign.items()]
    benign_rows += [[f"{k} (per agent)", v] for k, v in ev.benign_agent_episodes.items()]
    ep_rows: list[list[object]] = [
        ["episodes", len(ev.episodes)],
        ["true", ev.true_episodes],
        ["false", ev.false_episodes],
        ["false / 100 agent-hours", f"{ev.false_per_100_agent_hours:.2f}"],
        ["precision", pct(ev.precision)],
        ["from benign fleet-wide changes", ev.benign_change_total],
    ]
    ep_rows += [[f"false in fleet {k}", v] for k, v in ev.false_by_fleet.items()]
    out.append('<div class="cols"><div><h3>Recall and time to detect</h3>')
    out.append(
        _table(
            [
                "incident kind",
                "incidents",
                "detected",
                "recall",
                "median TTD",
                "p90 TTD",
                "max",
                "median after evidence",
            ],
            kind_rows,
            {1, 2, 3, 4, 5, 6, 7},
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
                    hm(r.start, with_date=True),
                    "yes" if r.detected else "MISSED",
                    dur(r.ttd_s),
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
                        hm(e.start, with_date=True),
                        dur(e.end - e.start),
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
        f'<div class="{cls}"><div class="v">{esc(value)}</div><div class="k">{esc(key)}</div></div>'
    )


def render_report(
    anomalies: Sequence[Anomaly],
    labels: Sequence[Label],
    summary: FleetSummary,
    evaluation: Evaluation | None,
    *,
    thresholds: Mapping[str, float] | None = None,
    title: str = "agentwatch backtest",
    max_agents: int = 60,
    whatif: WhatIf | None = None,
    rules: Mapping[str, str] | None = None,
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
        The :func:`~agentwatch.lab.evaluation.evaluate` result, or ``None`` (no tables, no
        true/false split in the histograms).
    thresholds
        Thresholds to measure margins against, by rule name or detector name (see
        :func:`margin`); by default each anomaly's own ``threshold``.
    title
        Page title.
    max_agents
        At most this many timelines (agents with incidents first, then by anomaly count).
    whatif
        Re-run figures with stricter thresholds (:func:`agentwatch.lab.whatif.run_whatif`).
    rules
        The rules file and its SHA-256 (:func:`agentwatch.lab.backtest.rules_fingerprint`).

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
    labs = list(labels)
    detectors = sorted({a.detector for a in anomalies})
    colors = {d: DETECTOR_PALETTE[i % len(DETECTOR_PALETTE)] for i, d in enumerate(detectors)}
    false_ids: set[str] | None = None
    if evaluation is not None:
        false_ids = {i for e in evaluation.episodes if not e.true for i in e.anomaly_ids}

    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
    )
    parts = [head, f"<h1>{esc(title)}</h1>"]
    fleets = ", ".join(f"{k} {v}" for k, v in summary.agents_by_fleet.items())
    parts.append(
        f'<p class="note">{summary.agents} agents{f" ({esc(fleets)})" if fleets else ""} · '
        f"{esc(hm(summary.start, True))} &#8211; {esc(hm(summary.end, True))} UTC "
        f"({summary.hours:.2f} h, {summary.agent_hours:.0f} agent-hours) · "
        f"{len(anomalies)} anomalies from {len(detectors)} detectors · "
        f"{sum(1 for x in labs if not x.benign and x.agent_id)} labelled incidents</p>"
    )
    if rules is not None:
        parts.append(
            f'<p class="note" id="rules">rules: <code>{esc(rules.get("source", "?"))}</code> '
            f"sha256 <code>{esc(rules.get('sha256', '?'))}</code></p>"
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
                f"{evaluation.detected}/{len(evaluation.incidents)} ({pct(evaluation.recall)})",
                "incidents detected",
                st("recall"),
            ),
            _card(dur(evaluation.median_ttd_s), "median time to detect"),
            _card(
                f"{evaluation.false_per_100_agent_hours:.2f}",
                f"false episodes / 100 agent-h ({evaluation.false_episodes})",
                st("false episodes / 100 agent-h"),
            ),
            _card(pct(evaluation.precision), "episode precision"),
            _card(
                str(evaluation.benign_change_total),
                "episodes from benign changes",
                st("benign-change episodes"),
            ),
        ]
    parts.append(f'<div class="cards">{"".join(cards)}</div>')

    # (a)
    parts.append('<section id="detectors"><h2>Anomalies by detector and severity</h2>')
    parts.append(detector_chart(anomalies, colors))
    parts.append("</section>")

    # (b)
    svg, shown, total = timeline(
        anomalies=anomalies,
        labs=labs,
        summary=summary,
        evaluation=evaluation,
        colors=colors,
        max_agents=max_agents,
    )
    parts.append('<section id="timelines"><h2>Agent timelines</h2>')
    legend = "".join(
        f'<span><span class="sw" style="background:{colors[d]}"></span>{esc(d)}</span>'
        for d in detectors
    )
    legend += (
        f'<span><span class="sw" style="background:{INCIDENT_FILL};opacity:.45"></span>'
        f"incident (lighter: +grace)</span>"
        f'<span><span class="sw" style="background:{BENIGN_FILL};opacity:.45"></span>'
        f"benign per-agent label</span>"
        f'<span><span class="sw" style="background:{CHANGE_FILL};opacity:.6"></span>'
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
        f' Bars: <span style="color:{TRUE_COLOR}">■</span> anomalies of true episodes, '
        f'<span style="color:{FALSE_COLOR}">■</span> of false episodes.'
        if evaluation is not None
        else ""
    )
    parts.append(
        '<p class="note">Per detector, how far each anomaly\'s score was above its threshold '
        f"(1.0 = exactly at the threshold).{split} What a stricter threshold would change is "
        "measured below by re-running the rules, not read off these bars.</p>"
    )
    parts.append(margin_panels(anomalies, thresholds, false_ids, colors))
    parts.append("</section>")

    if whatif is not None:
        parts.append('<section id="whatif"><h2>What if a rule were stricter</h2>')
        parts.append(whatif_html(whatif))
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
