"""The backtest HTML report: one self-contained page (inline CSS and SVG, no scripts).

:func:`render_report` builds it (:mod:`~agentwatch.lab.report.page`) from its sections:
anomalies per detector and per-agent timelines (:mod:`~agentwatch.lab.report.timeline`),
scores over threshold (:mod:`~agentwatch.lab.report.margins`), and the evaluation tables;
:mod:`~agentwatch.lab.report.style` holds the colours and formatters.
"""

from agentwatch.lab.report.margins import margin
from agentwatch.lab.report.page import render_report
from agentwatch.lab.report.style import DETECTOR_PALETTE, SEVERITY_COLORS

__all__ = ["DETECTOR_PALETTE", "SEVERITY_COLORS", "margin", "render_report"]
