"""The report's look: colours, CSS, and the small formatters every section uses."""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime

__all__ = [
    "BENIGN_FILL",
    "CHANGE_FILL",
    "CSS",
    "DETECTOR_PALETTE",
    "FALSE_COLOR",
    "INCIDENT_FILL",
    "SEVERITIES",
    "SEVERITY_COLORS",
    "TRUE_COLOR",
    "dur",
    "esc",
    "hm",
    "num",
    "pct",
]


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

TRUE_COLOR = "#4e79a7"
FALSE_COLOR = "#e8743b"
INCIDENT_FILL = "#e15759"
BENIGN_FILL = "#59a14f"
CHANGE_FILL = "#8e6bbf"

CSS = """
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


def esc(value: object) -> str:
    """HTML-escape any value (quotes included, so it is safe in attributes too)."""
    return html.escape(str(value), quote=True)


def num(value: float) -> str:
    """A compact coordinate."""
    return f"{value:.1f}".removesuffix(".0")


def hm(ts: float, with_date: bool = False) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M")


def dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
