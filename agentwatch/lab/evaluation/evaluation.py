"""The scored backtest: :class:`Evaluation`, its derived figures, target checks and text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentwatch.lab.evaluation.results import (
    DetectorStats,
    Episode,
    FleetSummary,
    IncidentResult,
    KindStats,
    finite,
    quantile,
    rate_per_100,
)
from agentwatch.lab.evaluation.targets import TargetCheck, Targets

__all__ = ["Evaluation", "expected_by_chance"]


@dataclass(frozen=True)
class Evaluation:
    """The scored backtest; build it with :func:`evaluate`."""

    summary: FleetSummary
    grace_s: float
    episode_gap_s: float
    change_window_s: float
    anomalies: int
    incidents: tuple[IncidentResult, ...]
    kinds: tuple[KindStats, ...]
    episodes: tuple[Episode, ...]
    detectors: tuple[DetectorStats, ...]
    benign_change_episodes: dict[str, int]
    """False episodes attributed to each benign fleet-wide change kind."""
    benign_agent_episodes: dict[str, int]
    """False episodes overlapping each kind of benign per-agent label (``error_burst``)."""
    false_by_fleet: dict[str, int]
    change_agent_hours: float | None = None
    """Agent-hours inside the benign change windows (each change's fleet over its window;
    ``None`` without fleet-wide changes)."""

    # -- derived numbers -----------------------------------------------------------------
    @property
    def detected(self) -> int:
        """Number of detected incidents."""
        return sum(r.detected for r in self.incidents)

    @property
    def recall(self) -> float | None:
        """Detected incidents / incidents (``None`` without incidents)."""
        return self.detected / len(self.incidents) if self.incidents else None

    @property
    def true_episodes(self) -> int:
        """Episodes touching an incident window."""
        return sum(e.true for e in self.episodes)

    @property
    def false_episodes(self) -> int:
        """Episodes touching no incident window."""
        return sum(not e.true for e in self.episodes)

    @property
    def false_per_100_agent_hours(self) -> float:
        """``false_episodes / agent_hours * 100`` (``inf`` for false episodes in no time)."""
        return rate_per_100(self.false_episodes, self.summary.agent_hours)

    @property
    def precision(self) -> float | None:
        """``true / (true + false)`` episodes (``None`` without episodes)."""
        n = len(self.episodes)
        return self.true_episodes / n if n else None

    @property
    def median_ttd_s(self) -> float | None:
        """Median time to detect over all detected incidents."""
        return quantile([r.ttd_s for r in self.incidents if r.ttd_s is not None], 0.5)

    @property
    def benign_change_total(self) -> int:
        """Distinct false episodes attributed to a benign fleet-wide change."""
        kinds = set(self.benign_change_episodes)
        return sum(1 for e in self.episodes if kinds.intersection(e.benign_causes))

    @property
    def benign_change_expected(self) -> float | None:
        """How many false episodes the change windows would hold by chance: the false
        episodes outside every window per agent-hour outside them, times the agent-hours
        inside (``None`` without changes).

        A window of two hours over a fleet of 450 agents is 900 agent-hours: at the false
        rate the targets allow elsewhere (0.5 per 100 agent-hours) it holds 4.5 episodes the
        change did not cause. With few false episodes the figure is rough; pooled over
        worlds (:func:`expected_by_chance`) it is steadier.
        """
        return expected_by_chance([self])

    def kind(self, name: str) -> KindStats | None:
        """The stats of one incident kind, if it had incidents."""
        return next((k for k in self.kinds if k.kind == name), None)

    def check(self, targets: Targets | None = None) -> list[TargetCheck]:
        """Check the evaluation against ``targets`` (default :class:`Targets`)."""
        t = targets or Targets()
        out: list[TargetCheck] = []
        recall = self.recall
        out.append(
            TargetCheck(
                "recall",
                recall is None or recall >= t.min_recall,
                f"{_pct(recall)} (>= {t.min_recall:.0%})",
            )
        )
        rate = self.false_per_100_agent_hours
        out.append(
            TargetCheck(
                "false episodes / 100 agent-h",
                rate <= t.max_false_per_100_agent_hours,
                f"{rate:.2f} (<= {t.max_false_per_100_agent_hours:g})",
            )
        )
        benign = self.benign_change_total
        out.append(
            TargetCheck(
                "benign-change episodes",
                benign <= t.max_benign_change_episodes,
                f"{benign} (<= {t.max_benign_change_episodes})",
            )
        )
        for name in t.ttd_kinds:
            stats = self.kind(name)
            if stats is None:
                continue
            med = stats.median_ttd_s
            out.append(
                TargetCheck(
                    f"median TTD {name}",
                    med is not None and med <= t.max_median_ttd_s,
                    f"{_secs(med)} (<= {t.max_median_ttd_s:g}s)",
                )
            )
        if t.max_median_after_evidence_s is not None:
            out += self._after_evidence(t.ttd_kinds, t.max_median_after_evidence_s)
        fast = self.fast_ramps
        if fast:
            ok = sum(self.ramp_in_time(r, t) for r in fast)
            out.append(
                TargetCheck(
                    "fast ramps flagged after 2x",
                    ok == len(fast),
                    f"{ok}/{len(fast)} within {t.max_after_2x_s / 60:g} min of crossing 2x",
                )
            )
        return out

    def _after_evidence(self, kinds: tuple[str, ...], most: float) -> list[TargetCheck]:
        """Each detected kind's median delay after its incidents' first evidence."""
        out = []
        for name in kinds:
            stats = self.kind(name)
            if stats is None or not stats.detected:
                continue
            med = stats.median_after_evidence_s
            out.append(
                TargetCheck(
                    f"median after evidence {name}",
                    med is not None and med <= most,
                    f"{_secs(med)} (<= {most:g}s)",
                )
            )
        return out

    @property
    def fast_ramps(self) -> list[IncidentResult]:
        """Cost ramps that reach 3x their starting cost rate within 2 h."""
        return [r for r in self.incidents if r.fast_ramp]

    @staticmethod
    def ramp_in_time(result: IncidentResult, targets: Targets | None = None) -> bool:
        """Whether a cost ramp was flagged by ``max_after_2x_s`` after it crossed 2x."""
        after = result.after_2x_s
        limit = (targets or Targets()).max_after_2x_s
        return result.detected and after is not None and after <= limit

    # -- output --------------------------------------------------------------------------
    def to_dict(self, *, max_episodes: int = 200) -> dict[str, Any]:
        """JSON-able form; lists at most ``max_episodes`` false episodes (earliest first)."""
        false = [e for e in self.episodes if not e.true]
        return {
            "summary": self.summary.to_dict(),
            "params": {
                "grace_s": self.grace_s,
                "episode_gap_s": self.episode_gap_s,
                "change_window_s": self.change_window_s,
            },
            "anomalies": self.anomalies,
            "incidents": len(self.incidents),
            "detected": self.detected,
            "recall": self.recall,
            "median_ttd_s": self.median_ttd_s,
            "episodes": len(self.episodes),
            "true_episodes": self.true_episodes,
            "false_episodes": self.false_episodes,
            "false_per_100_agent_hours": finite(self.false_per_100_agent_hours),
            "precision": self.precision,
            "benign_change_episodes": dict(self.benign_change_episodes),
            "benign_change_total": self.benign_change_total,
            "benign_change_expected": self.benign_change_expected,
            "change_agent_hours": self.change_agent_hours,
            "benign_agent_episodes": dict(self.benign_agent_episodes),
            "false_by_fleet": dict(self.false_by_fleet),
            "kinds": [k.to_dict() for k in self.kinds],
            "detectors": [d.to_dict() for d in self.detectors],
            "incident_results": [r.to_dict() for r in self.incidents],
            "false_episode_list": [e.to_dict() for e in false[:max_episodes]],
            "false_episode_list_truncated": len(false) > max_episodes,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.check()],
        }

    def format_text(self, *, targets: Targets | None = None, max_missed: int = 20) -> str:
        """A compact human report (what ``agentwatch backtest --labels`` prints)."""
        s = self.summary
        lines = [
            f"backtest: {s.agents} agents x {s.hours:.2f} h = {s.agent_hours:.1f} agent-hours, "
            f"{self.anomalies} anomalies, grace {self.grace_s:g}s, "
            f"episode gap {self.episode_gap_s:g}s",
            "",
        ]
        rows = [
            [
                k.kind,
                str(k.incidents),
                str(k.detected),
                _pct(k.recall),
                _secs(k.median_ttd_s),
                _secs(k.p90_ttd_s),
                _secs(k.median_after_evidence_s),
            ]
            for k in self.kinds
        ]
        rows.append(
            [
                "ALL",
                str(len(self.incidents)),
                str(self.detected),
                _pct(self.recall),
                _secs(self.median_ttd_s),
                "",
                "",
            ]
        )
        header = ["incident kind", "n", "det", "recall", "med TTD", "p90 TTD", "med after evidence"]
        lines += _table(header, rows)
        lines.append("")
        benign = ", ".join(f"{k} {v}" for k, v in self.benign_change_episodes.items()) or "none"
        agent_benign = ", ".join(f"{k} {v}" for k, v in self.benign_agent_episodes.items())
        lines += [
            f"episodes: {len(self.episodes)} ({self.true_episodes} true, "
            f"{self.false_episodes} false); precision {_pct(self.precision)}",
            f"false episodes / 100 agent-hours: {self.false_per_100_agent_hours:.2f}",
            f"false episodes from benign fleet-wide changes: {self.benign_change_total}"
            f" ({benign}{_by_chance(self.benign_change_expected)})"
            + (f"; overlapping benign labels: {agent_benign}" if agent_benign else ""),
            "",
        ]
        if self.detectors:
            drows = [
                [
                    d.detector,
                    str(d.anomalies),
                    str(d.incidents_detected),
                    str(d.first_detections),
                    str(d.true_episodes),
                    str(d.false_episodes),
                    str(d.sole_false_episodes),
                    f"{d.false_per_100_agent_hours:.2f}",
                ]
                for d in self.detectors
            ]
            lines += _table(
                ["detector", "anoms", "incid", "first", "true ep", "false ep", "sole", "f/100h"],
                drows,
            )
            lines.append("")
        missed = [r for r in self.incidents if not r.detected]
        if missed:
            lines.append(f"missed incidents ({len(missed)}):")
            lines += [f"  {r.describe()}" for r in missed[:max_missed]]
            if len(missed) > max_missed:
                lines.append(f"  ... and {len(missed) - max_missed} more")
            lines.append("")
        checks = self.check(targets)
        verdict = "PASS" if all(c.ok for c in checks) else "FAIL"
        lines.append(f"targets: {verdict}")
        lines += [f"  [{'ok' if c.ok else 'XX'}] {c.name}: {c.detail}" for c in checks]
        return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}s"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        return "  ".join(cells).rstrip()

    return [fmt(header), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]


def _by_chance(expected: float | None) -> str:
    if expected is None:
        return ""
    return f"; {expected:.2f} expected by chance at the false rate outside the change windows"


def expected_by_chance(evaluations: list[Evaluation]) -> float | None:
    """False episodes the change windows of ``evaluations`` would hold by chance, at their
    pooled false rate outside the windows (``None`` when none had a fleet-wide change).

    Examples
    --------
    >>> from agentwatch.lab.evaluation.results import FleetSummary
    >>> ev = Evaluation(FleetSummary(agents=100, start=0.0, end=36000.0), 300.0, 900.0, 7200.0,
    ...                 0, (), (), (), (), {}, {}, {}, change_agent_hours=180.0)
    >>> expected_by_chance([ev])  # no false episode outside the windows
    0.0
    """
    inside = outside = 0.0
    background = 0
    for ev in evaluations:
        if ev.change_agent_hours is None:
            continue
        inside += ev.change_agent_hours
        outside += max(ev.summary.agent_hours - ev.change_agent_hours, 0.0)
        background += ev.false_episodes - ev.benign_change_total
    if inside == 0.0 and outside == 0.0:
        return None
    return background / outside * inside if outside > 0.0 else None
