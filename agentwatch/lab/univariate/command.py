"""``agentwatch lab univariate``: print the protocol's report (text or JSON).

A thin adapter over :func:`~agentwatch.lab.univariate.run.run_protocol`: a foreseeable
failure (no corpus, an unknown scorer) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import typer

from agentwatch.lab.univariate.candidates import CANDIDATES
from agentwatch.lab.univariate.corpus import CorpusError, load_corpus
from agentwatch.lab.univariate.run import BUDGETS, Report, run_protocol
from agentwatch.lab.univariate.scoring import SeriesResult, Summary

__all__ = ["format_report", "univariate"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.0f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _delay(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if abs(seconds) < 7_200:
        return f"{seconds / 60.0:.0f} min"
    return f"{seconds / 3_600.0:.1f} h"


def _summary_line(label: str, s: Summary) -> str:
    return (
        f"  {label:<11} {s.series:>2} series {s.detected:>2}/{s.windows:<2} windows "
        f"recall {_pct(s.recall):>4}  false {s.false_alarms:>4} "
        f"({_num(s.false_per_1000, 2)}/1000 pts, {_num(s.false_per_day, 2)}/day)  "
        f"precision {_pct(s.precision):>4}  median delay {_num(s.median_delay_points, 0)} pts "
        f"/ {_delay(s.median_delay_s)}, lag {_num(s.median_lag_points, 0)} pts "
        f"/ {_delay(s.median_lag_s)}  NAB {_num(s.nab)}"
    )


def _series_line(r: SeriesResult) -> str:
    delays = ", ".join(
        f"{p} pts/{_delay(s)} (lag {_delay(lag)})"
        for p, s, lag in zip(r.delays_points, r.delays_s, r.lags_s, strict=True)
    )
    return (
        f"    {r.name:<55} {r.half:<11} {r.detected}/{r.windows} false {r.false_alarms:>4} "
        f"NAB {_num(r.nab):>7}  delays [{delays}]"
    )


def format_report(report: Report) -> str:
    """The report as text: per candidate, pooled halves then every series."""
    lines = [
        f"{len(report.series)} series ("
        f"{sum(s.half == 'calibration' for s in report.series)} calibration, "
        f"{sum(s.half == 'held_out' for s in report.series)} held out), "
        f"{sum(len(s.windows) for s in report.series)} windows; budgets tried on the "
        f"calibration half: {', '.join(f'{b:g}' for b in BUDGETS)} false alarms/day; "
        f"cooldown {report.cooldown_s:g} s",
    ]
    if report.missing:
        lines.append(f"labelled but not under data/ (skipped): {len(report.missing)}")
    for rank, c in enumerate(report.candidates, start=1):
        lines.append("")
        lines.append(
            f"{rank}. {c.candidate.name}: {c.candidate.description}; budget "
            f"{c.budget:g}/day; {c.us_per_point:.1f} us/point"
        )
        lines.append(_summary_line("calibration", c.summary("calibration")))
        lines.append(_summary_line("held out", c.summary("held_out")))
        lines.extend(_series_line(r) for r in c.results)
    lines.append("")
    lines.append(f"recommended (best calibration-half NAB): {report.recommended.candidate.name}")
    return "\n".join(lines)


def univariate(nab: Path, *, scorers: Sequence[str], as_json: bool) -> Report:
    """Load the corpus at ``nab``, run the protocol, print the report; returns it."""
    unknown = [s for s in scorers if s not in CANDIDATES]
    if unknown:
        typer.echo(
            f"agentwatch lab univariate: unknown scorer {', '.join(unknown)}; "
            f"choose from {', '.join(CANDIDATES)}",
            err=True,
        )
        raise typer.Exit(2)
    try:
        series, missing = load_corpus(nab)
    except CorpusError as exc:
        typer.echo(f"agentwatch lab univariate: {exc}", err=True)
        raise typer.Exit(2) from None
    report = run_protocol(series, list(scorers) or None, missing=missing)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        typer.echo(format_report(report))
    return report
