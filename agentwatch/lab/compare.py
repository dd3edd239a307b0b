"""``backtest --compare A.yml B.yml``: what a rules change gains and what it costs.

Both rules files replay the same events (a trace, or each world of a half); the comparison
lists, per trace or world, the figures under A and under B, the incidents B catches that A
missed (gained) and the reverse (lost), and the false episodes B removes and adds (an episode
of B "matches" one of A when they are the same agent's and their spans come within the
episode gap of each other: they would have paged for the same trouble).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentwatch.lab.evaluation import Episode, Evaluation, Targets

__all__ = ["Comparison", "format_comparison"]


def _overlaps(a: Episode, b: Episode, gap: float) -> bool:
    return a.agent_id == b.agent_id and a.start - gap <= b.end and b.start - gap <= a.end


@dataclass(frozen=True)
class Comparison:
    """One trace or world scored under rules A and rules B."""

    name: str
    a: Evaluation
    b: Evaluation

    @property
    def gained(self) -> list[str]:
        """Incidents B catches and A misses."""
        caught_a = {r.id for r in self.a.incidents if r.detected}
        return sorted(r.id for r in self.b.incidents if r.detected and r.id not in caught_a)

    @property
    def lost(self) -> list[str]:
        """Incidents A catches and B misses."""
        caught_b = {r.id for r in self.b.incidents if r.detected}
        return sorted(r.id for r in self.a.incidents if r.detected and r.id not in caught_b)

    @property
    def false_removed(self) -> int:
        """False episodes of A with no overlapping false episode under B."""
        fb = [e for e in self.b.episodes if not e.true]
        gap = self.a.episode_gap_s
        return sum(not any(_overlaps(e, f, gap) for f in fb) for e in self.a.episodes if not e.true)

    @property
    def false_added(self) -> int:
        """False episodes of B with no overlapping false episode under A."""
        fa = [e for e in self.a.episodes if not e.true]
        gap = self.a.episode_gap_s
        return sum(not any(_overlaps(e, f, gap) for f in fa) for e in self.b.episodes if not e.true)

    def to_dict(self, targets: Targets | None = None) -> dict[str, Any]:
        """JSON-able form."""

        def side(ev: Evaluation) -> dict[str, Any]:
            return {
                "recall": ev.recall,
                "false_episodes": ev.false_episodes,
                "false_per_100_agent_hours": round(ev.false_per_100_agent_hours, 4),
                "benign_change_episodes": ev.benign_change_total,
                "median_ttd_s": {k.kind: k.median_ttd_s for k in ev.kinds},
                "passed": all(c.ok for c in ev.check(targets)),
            }

        return {
            "name": self.name,
            "a": side(self.a),
            "b": side(self.b),
            "gained": self.gained,
            "lost": self.lost,
            "false_removed": self.false_removed,
            "false_added": self.false_added,
        }


def _arrow(a: str, b: str) -> str:
    return a if a == b else f"{a} -> {b}"


def _ttd(ev: Evaluation, kind: str) -> str:
    stats = ev.kind(kind)
    if stats is None:
        return ""
    med = stats.median_ttd_s
    return f"{stats.detected}/{stats.incidents} " + ("-" if med is None else f"{med:.0f}s")


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return [fmt.format(*header).rstrip(), "  ".join("-" * w for w in widths)] + [
        fmt.format(*r).rstrip() for r in rows
    ]


def format_comparison(
    comparisons: Sequence[Comparison], a_name: str, b_name: str, targets: Targets | None = None
) -> str:
    """Per trace or world: the figures A -> B, what B gains and loses; then per-kind TTD."""
    t = targets or Targets()
    rows: list[list[str]] = []
    for c in comparisons:
        pa = all(x.ok for x in c.a.check(t))
        pb = all(x.ok for x in c.b.check(t))
        rows.append(
            [
                c.name,
                _arrow(
                    f"{c.a.detected}/{len(c.a.incidents)}", f"{c.b.detected}/{len(c.b.incidents)}"
                ),
                _arrow(
                    f"{c.a.false_per_100_agent_hours:.2f}", f"{c.b.false_per_100_agent_hours:.2f}"
                ),
                _arrow(str(c.a.benign_change_total), str(c.b.benign_change_total)),
                f"+{len(c.gained)} -{len(c.lost)}",
                f"-{c.false_removed} +{c.false_added}",
                _arrow("PASS" if pa else "FAIL", "PASS" if pb else "FAIL"),
            ]
        )
    lines = [f"A = {a_name}", f"B = {b_name}", ""]
    lines += _table(
        ["trace", "detected", "false/100h", "benign", "incidents", "false episodes", "targets"],
        rows,
    )
    kinds = sorted({k.kind for c in comparisons for ev in (c.a, c.b) for k in ev.kinds})
    if kinds:
        lines.append("")
        krows = [
            [c.name, *(_arrow(_ttd(c.a, k), _ttd(c.b, k)) for k in kinds)] for c in comparisons
        ]
        lines += _table(["caught, median TTD", *kinds], krows)
    changed = [c for c in comparisons if c.gained or c.lost]
    if changed:
        lines += ["", "incidents B gains (+) and loses (-):"]
        for c in changed:
            ids = [f"+{i}" for i in c.gained] + [f"-{i}" for i in c.lost]
            lines.append(f"  {c.name}: " + " ".join(ids))
    return "\n".join(lines)
