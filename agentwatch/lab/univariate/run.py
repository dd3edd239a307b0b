"""The protocol: every candidate on every series, its budget chosen on the calibration half.

For each candidate the prequential scores of each series are computed once; for each budget
of :data:`BUDGETS` they become alarms and are scored. The budget with the best normalised
NAB score on the **calibration** half (ties: the smaller budget) is the candidate's; the
held-out half is reported at that budget and never used to choose anything. The
recommendation is the candidate with the best calibration-half score (ties: fewer
calibration-half false alarms, then the name).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from agentwatch.lab.univariate.candidates import (
    CANDIDATES,
    COOLDOWN_S,
    Candidate,
    alarms_from_scores,
    scores_of,
)
from agentwatch.lab.univariate.corpus import Series
from agentwatch.lab.univariate.scoring import SeriesResult, Summary, score_series, summarize

__all__ = ["BUDGETS", "CandidateReport", "Report", "run_protocol"]

#: False alarms per series-day tried on the calibration half (fixed before any run).
BUDGETS: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


@dataclass(frozen=True)
class CandidateReport:
    """One candidate: its chosen budget and its figures at that budget."""

    candidate: Candidate
    budget: float
    results: tuple[SeriesResult, ...]  # at ``budget``, every series
    calibration_by_budget: tuple[tuple[float, float | None], ...]  # (budget, NAB score)
    us_per_point: float

    def summary(self, half: str | None = None) -> Summary:
        """Pooled figures of one half (``calibration``, ``held_out``) or of all series."""
        return summarize([r for r in self.results if half is None or r.half == half])

    def to_dict(self) -> dict[str, object]:
        return {
            "scorer": self.candidate.name,
            "description": self.candidate.description,
            "budget_per_day": self.budget,
            "us_per_point": round(self.us_per_point, 1),
            "calibration_nab_by_budget": [
                {"budget_per_day": b, "nab": None if s is None else round(s, 1)}
                for b, s in self.calibration_by_budget
            ],
            "calibration": self.summary("calibration").to_dict(),
            "held_out": self.summary("held_out").to_dict(),
            "all": self.summary().to_dict(),
            "series": [r.to_dict() for r in self.results],
        }


@dataclass(frozen=True)
class Report:
    """Every candidate's report, best calibration score first."""

    candidates: tuple[CandidateReport, ...]
    series: tuple[Series, ...]
    missing: tuple[str, ...]
    cooldown_s: float

    @property
    def recommended(self) -> CandidateReport:
        return self.candidates[0]

    def to_dict(self) -> dict[str, object]:
        return {
            "series": [
                {
                    "name": s.name,
                    "half": s.half,
                    "points": len(s.values),
                    "windows": len(s.windows),
                }
                for s in self.series
            ],
            "missing": list(self.missing),
            "budgets_tried": list(BUDGETS),
            "cooldown_s": self.cooldown_s,
            "recommended": self.recommended.candidate.name,
            "candidates": [c.to_dict() for c in self.candidates],
        }


def _nab(results: Sequence[SeriesResult]) -> float | None:
    return summarize(results).nab if results else None


def run_protocol(
    series: Sequence[Series],
    names: Sequence[str] | None = None,
    *,
    budgets: Sequence[float] = BUDGETS,
    missing: Sequence[str] = (),
    cooldown_s: float = COOLDOWN_S,
) -> Report:
    """Run ``names`` (default: every candidate) on ``series``; see the module docstring."""
    chosen = [CANDIDATES[n] for n in (names or list(CANDIDATES))]
    reports: list[CandidateReport] = []
    for candidate in chosen:
        started = time.perf_counter()
        scores = [scores_of(candidate, s) for s in series]
        elapsed = time.perf_counter() - started
        points = sum(len(s.values) for s in series)
        by_budget: list[tuple[float, tuple[SeriesResult, ...]]] = []
        for budget in budgets:
            results = tuple(
                score_series(
                    s,
                    alarms_from_scores(
                        s.timestamps,
                        sc,
                        budget_per_day=budget,
                        floor=candidate.floor,
                        cooldown_s=cooldown_s,
                    ),
                )
                for s, sc in zip(series, scores, strict=True)
            )
            by_budget.append((budget, results))
        calibration = [(b, _nab([r for r in rs if r.half == "calibration"])) for b, rs in by_budget]
        best = max(
            range(len(by_budget)),
            key=lambda i: (
                -1e9 if calibration[i][1] is None else calibration[i][1],  # type: ignore[operator]
                -by_budget[i][0],
            ),
        )
        reports.append(
            CandidateReport(
                candidate=candidate,
                budget=by_budget[best][0],
                results=by_budget[best][1],
                calibration_by_budget=tuple(calibration),
                us_per_point=1e6 * elapsed / points if points else 0.0,
            )
        )
    reports.sort(  # best calibration score; then fewer calibration false alarms; then name
        key=lambda r: (
            -(r.summary("calibration").nab or -1e9),
            r.summary("calibration").false_alarms,
            r.candidate.name,
        )
    )
    return Report(tuple(reports), tuple(series), tuple(missing), cooldown_s)
