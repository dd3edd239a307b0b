"""Report section (c): each detector's scores as a multiple of its threshold."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from agentwatch.lab.report.style import FALSE_COLOR, TRUE_COLOR, esc, num
from agentwatch.schemas import Anomaly

__all__ = ["margin", "margin_panels"]


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


def margin_panels(
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
    cols, panel_w, panel_h, gap = 3, 400.0, 170.0, 16.0
    n_rows = max(1, math.ceil(len(detectors) / cols))
    width = cols * panel_w + (cols - 1) * gap
    height = n_rows * (panel_h + gap)
    parts = [
        f'<svg viewBox="0 0 {num(width)} {num(height)}" role="img" '
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
        py0, py1 = oy + 28.0, oy + panel_h - 38.0  # plot top / baseline
        parts.append(
            f'<rect x="{num(ox)}" y="{num(oy)}" width="{num(panel_w)}" height="{num(panel_h)}" '
            f'fill="#ffffff" stroke="#eaecf0"/>'
            f'<rect x="{num(ox + 8)}" y="{num(oy + 8)}" width="10" height="10" rx="2" '
            f'fill="{colors[det]}"/>'
            f'<text x="{num(ox + 23)}" y="{num(oy + 17)}" font-weight="600">{esc(det[:40])}</text>'
            f'<text x="{num(ox + panel_w - 8)}" y="{num(oy + 17)}" text-anchor="end" '
            f'class="muted">{len(values)} anomalies{note}</text>'
        )
        if not values:
            parts.append(
                f'<text x="{num(px0)}" y="{num(py0 + 30)}" class="muted">'
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
                (true_bins[b], colors[det] if false_ids is None else TRUE_COLOR, "true"),
                (false_bins[b], FALSE_COLOR, "false"),
            ):
                if not count:
                    continue
                h = count / peak * (py1 - py0)
                y -= h
                label = "" if false_ids is None else f" in {what} episodes"
                parts.append(
                    f'<rect x="{num(x + 0.5)}" y="{num(y)}" width="{num(bar_w - 1)}" '
                    f'height="{num(h)}" fill="{color}">'
                    f"<title>margin {span}: {count} anomalies{label}</title></rect>"
                )
        # axes and ticks
        parts.append(
            f'<line x1="{num(px0)}" y1="{num(py1)}" x2="{num(px1)}" y2="{num(py1)}" '
            'stroke="#98a2b3"/>'
            f'<text x="{num(px0 - 4)}" y="{num(py0 + 8)}" text-anchor="end" class="muted">'
            f"{peak}</text>"
            f'<text x="{num(px0 - 4)}" y="{num(py1)}" text-anchor="end" class="muted">0</text>'
            f'<text x="{num(px1 - 4)}" y="{num(py1 + 12)}" text-anchor="middle" class="muted">'
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
                f'<line x1="{num(x)}" y1="{num(py1)}" x2="{num(x)}" y2="{num(py1 + 3)}" '
                f'stroke="#98a2b3"/>'
                f'<text x="{num(x)}" y="{num(py1 + 13)}" text-anchor="middle" class="muted">'
                f"{t:g}</text>"
            )
        tx = bx(1.0) if lo <= 1.0 <= hi else px0
        parts.append(
            f'<line x1="{num(tx)}" y1="{num(py0 - 4)}" x2="{num(tx)}" y2="{num(py1)}" '
            f'stroke="#1d2330" stroke-dasharray="4 3" stroke-width="1.3"/>'
            f'<text x="{num(tx + 3)}" y="{num(py0 + 2)}" font-size="10" stroke="#fff" '
            f'stroke-width="3" paint-order="stroke">threshold</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
