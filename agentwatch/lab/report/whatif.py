"""Report section (d): what each rule would catch and miss with stricter thresholds.

The figures come from re-running the rules (:func:`agentwatch.lab.whatif.run_whatif`), not
from the score histograms: a stricter threshold also changes what a detector learns, when its
``for`` clock starts and when its cooldown ends.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentwatch.lab.evaluation import Evaluation
from agentwatch.lab.report.style import dur, esc, pct
from agentwatch.lab.whatif import THRESHOLDS, WhatIf

__all__ = ["whatif_html"]


def _cells(ev: Evaluation | None, base: Evaluation | None) -> list[str]:
    if ev is None:
        return ["", "", "", ""]
    lost = ""
    if base is not None:
        before = {r.id for r in base.incidents if r.detected}
        after = {r.id for r in ev.incidents if r.detected}
        missed = sorted(before - after)
        lost = ", ".join(missed[:6]) + (" …" if len(missed) > 6 else "") or "none"
    return [
        pct(ev.recall),
        str(ev.false_episodes),
        dur(ev.median_ttd_s),
        lost,
    ]


def _row(cells: Sequence[str], numeric: set[int], strong: bool = False) -> str:
    out = []
    for i, cell in enumerate(cells):
        cls = ' class="n"' if i in numeric else ""
        text = f"<b>{esc(cell)}</b>" if strong and i == 0 else esc(cell)
        out.append(f"<td{cls}>{text}</td>")
    return "<tr>" + "".join(out) + "</tr>"


def whatif_html(whatif: WhatIf) -> str:
    """One table per rule with a threshold: the rule as it is, then each stricter copy."""
    header = (
        "<tr><th>thresholds</th><th class=n>rule's anomalies</th><th class=n>recall</th>"
        "<th class=n>false episodes</th><th class=n>median TTD</th>"
        "<th>incidents no longer caught</th></tr>"
    )
    numeric = {1, 2, 3, 4}
    parts: list[str] = []
    rules = sorted({s.rule for s in whatif.scenarios})
    if not rules:
        return '<p class="note">no rule with a threshold to scale</p>'
    for rule in rules:
        as_is = _cells(whatif.base, None)[:3]
        rows = [_row(["as is", str(whatif.base_anomalies.get(rule, 0)), *as_is, ""], numeric, True)]
        for s in sorted(whatif.for_rule(rule), key=lambda s: s.factor):
            label = f"x{s.factor:g} stricter"
            rows.append(
                _row([label, str(s.anomalies), *_cells(s.evaluation, whatif.base)], numeric)
            )
        parts.append(
            f"<h3>{esc(rule)}</h3><table><thead>{header}</thead><tbody>{''.join(rows)}"
            "</tbody></table>"
        )
    scaled = "; ".join(
        f"{det}: " + ", ".join(f"{p}{'' if up else ' (divided)'}" for p, up in params)
        for det, params in sorted(THRESHOLDS.items())
    )
    parts.append(
        '<p class="note">Each row re-runs the whole trace with one rule\'s thresholds made '
        "that much stricter (all others as they are) and scores it again. Scaled parameters "
        f"(multiplied unless noted): {esc(scaled)}.</p>"
    )
    return "".join(parts)
