"""Backtest scoring: incident recall, time to detect, false alert episodes, precision.

:func:`evaluate` compares the anomalies a backtest produced with the simulator's labels
(:meth:`agentwatch.simulator.Simulation.labels`, :func:`agentwatch.simulator.load_labels`) and
returns an :class:`Evaluation`: the numbers users tune detector thresholds against, and what
``agentwatch backtest --labels`` prints. Everything here is a pure function of its inputs.

The definitions are spelled out in :func:`evaluate`; in short, what pages a human is an
*episode* (a chain of one agent's anomalies), so precision and the false alert rate count
episodes, not anomalies, while recall and time to detect count incidents.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentwatch.schemas import ActionEvent, Anomaly

__all__ = [
    "DEFAULT_TTD_KINDS",
    "DetectorStats",
    "Episode",
    "Evaluation",
    "FleetSummary",
    "IncidentResult",
    "KindStats",
    "TargetCheck",
    "Targets",
    "evaluate",
    "parse_time",
]

DEFAULT_TTD_KINDS: tuple[str, ...] = (
    "runaway_loop",
    "cost_explosion",
    "error_storm",
    "privilege_probing",
    "exfiltration",
    "unapproved_high_risk",
)
"""Incident kinds that must be detected fast (median time to detect within a minute)."""


def parse_time(value: Any) -> float:
    """Epoch seconds from an RFC 3339 string, an aware ``datetime`` or a number.

    Examples
    --------
    >>> parse_time("2026-01-05T09:00:00Z")
    1767603600.0
    >>> parse_time(1767603600)
    1767603600.0
    """
    if isinstance(value, datetime):
        aware = value if value.utcoffset() is not None else value.replace(tzinfo=UTC)
        return aware.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value)
        if parsed.utcoffset() is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise TypeError(f"not a timestamp: {value!r}")


def _iso(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def _quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation quantile (numpy's default); ``None`` for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


# -- inputs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetSummary:
    """What was replayed: how many agents over which event-time span.

    Parameters
    ----------
    agents
        Number of distinct agents in the replayed events.
    start, end
        First and last event time (epoch seconds).
    agents_by_fleet
        ``{fleet: agents}``.

    Examples
    --------
    >>> FleetSummary(agents=10, start=0.0, end=7200.0).agent_hours
    20.0
    """

    agents: int
    start: float
    end: float
    agents_by_fleet: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.agents < 0:
            raise ValueError(f"agents must be >= 0, got {self.agents}")
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.end < self.start:
            raise ValueError(f"bad span: start={self.start} end={self.end}")

    @property
    def hours(self) -> float:
        """Length of the replayed span in hours."""
        return (self.end - self.start) / 3600.0

    @property
    def agent_hours(self) -> float:
        """``agents * hours``: the denominator of the false alert rate."""
        return self.agents * self.hours

    @classmethod
    def from_events(cls, events: Iterable[ActionEvent]) -> FleetSummary:
        """Summarize a stream of events (one pass; any order).

        Examples
        --------
        >>> from agentwatch.schemas import decode_event
        >>> raw = [b'{"event_id":"e%d","ts":"2026-01-01T00:0%d:00Z","agent_id":"a%d",'
        ...        b'"fleet":"f","action":"x"}' % (i, i, i % 2) for i in range(3)]
        >>> s = FleetSummary.from_events(decode_event(r) for r in raw)
        >>> s.agents, s.end - s.start, s.agents_by_fleet
        (2, 120.0, {'f': 2})
        """
        fleets: dict[str, str] = {}
        lo, hi = math.inf, -math.inf
        for event in events:
            ts = event.ts.timestamp()
            lo = min(lo, ts)
            hi = max(hi, ts)
            fleets.setdefault(event.agent_id, event.fleet)
        if not fleets:
            return cls(agents=0, start=0.0, end=0.0, agents_by_fleet={})
        return cls(
            agents=len(fleets),
            start=lo,
            end=hi,
            agents_by_fleet=dict(sorted(Counter(fleets.values()).items())),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "agents": self.agents,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "hours": round(self.hours, 4),
            "agent_hours": round(self.agent_hours, 4),
            "agents_by_fleet": dict(self.agents_by_fleet),
        }


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IncidentResult:
    """One scored incident (a non-benign label with an ``agent_id``)."""

    id: str
    kind: str
    agent_id: str
    fleet: str
    start: float
    end: float
    detected: bool
    ttd_s: float | None
    """First in-window anomaly time minus the incident start (``None`` if missed)."""
    first_detector: str | None
    detectors: tuple[str, ...]
    """Every detector with an anomaly in the incident window, sorted."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "id": self.id,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "fleet": self.fleet,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "detected": self.detected,
            "ttd_s": self.ttd_s,
            "first_detector": self.first_detector,
            "detectors": list(self.detectors),
        }


@dataclass(frozen=True)
class Episode:
    """A chain of one agent's anomalies, each less than ``episode_gap_s`` after the previous.

    One episode is what would page a human once; ``true`` if any of its anomalies falls in one
    of the agent's incident windows.
    """

    agent_id: str
    fleet: str
    start: float
    end: float
    anomalies: int
    anomaly_ids: tuple[str, ...]
    detectors: tuple[str, ...]
    true: bool
    incident_ids: tuple[str, ...]
    """Incidents whose window contains one of the episode's anomalies."""
    benign_causes: tuple[str, ...]
    """For a false episode: the benign labels it is attributed to (``"model_upgrade"``,
    ``"error_burst"``, ...)."""

    def to_dict(self, *, max_ids: int = 20) -> dict[str, Any]:
        """JSON-able form (at most ``max_ids`` anomaly ids)."""
        return {
            "agent_id": self.agent_id,
            "fleet": self.fleet,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "anomalies": self.anomalies,
            "anomaly_ids": list(self.anomaly_ids[:max_ids]),
            "detectors": list(self.detectors),
            "true": self.true,
            "incident_ids": list(self.incident_ids),
            "benign_causes": list(self.benign_causes),
        }


@dataclass(frozen=True)
class KindStats:
    """Recall and time to detect of one incident kind."""

    kind: str
    incidents: int
    detected: int
    median_ttd_s: float | None
    p90_ttd_s: float | None
    max_ttd_s: float | None

    @property
    def recall(self) -> float | None:
        """``detected / incidents`` (``None`` without incidents)."""
        return self.detected / self.incidents if self.incidents else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "kind": self.kind,
            "incidents": self.incidents,
            "detected": self.detected,
            "recall": self.recall,
            "median_ttd_s": self.median_ttd_s,
            "p90_ttd_s": self.p90_ttd_s,
            "max_ttd_s": self.max_ttd_s,
        }


@dataclass(frozen=True)
class DetectorStats:
    """What one detector contributed."""

    detector: str
    anomalies: int
    true_episodes: int
    """True episodes with at least one of this detector's anomalies."""
    false_episodes: int
    """False episodes with at least one of this detector's anomalies."""
    sole_false_episodes: int
    """False episodes made of this detector's anomalies only (silencing it removes them)."""
    incidents_detected: int
    """Incidents with one of this detector's anomalies in their window."""
    first_detections: int
    """Incidents this detector flagged first."""
    false_per_100_agent_hours: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        return {
            "detector": self.detector,
            "anomalies": self.anomalies,
            "true_episodes": self.true_episodes,
            "false_episodes": self.false_episodes,
            "sole_false_episodes": self.sole_false_episodes,
            "incidents_detected": self.incidents_detected,
            "first_detections": self.first_detections,
            "false_per_100_agent_hours": _finite(self.false_per_100_agent_hours),
        }


@dataclass(frozen=True)
class Targets:
    """The acceptance bar a backtest is checked against (the defaults are the project's)."""

    min_recall: float = 0.95
    max_false_per_100_agent_hours: float = 1.0
    max_benign_change_episodes: int = 0
    max_median_ttd_s: float = 60.0
    ttd_kinds: tuple[str, ...] = DEFAULT_TTD_KINDS


@dataclass(frozen=True)
class TargetCheck:
    """One line of :meth:`Evaluation.check`."""

    name: str
    ok: bool
    detail: str


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
        return _rate(self.false_episodes, self.summary.agent_hours)

    @property
    def precision(self) -> float | None:
        """``true / (true + false)`` episodes (``None`` without episodes)."""
        n = len(self.episodes)
        return self.true_episodes / n if n else None

    @property
    def median_ttd_s(self) -> float | None:
        """Median time to detect over all detected incidents."""
        return _quantile([r.ttd_s for r in self.incidents if r.ttd_s is not None], 0.5)

    @property
    def benign_change_total(self) -> int:
        """Distinct false episodes attributed to a benign fleet-wide change."""
        kinds = set(self.benign_change_episodes)
        return sum(1 for e in self.episodes if kinds.intersection(e.benign_causes))

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
        return out

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
            "false_per_100_agent_hours": _finite(self.false_per_100_agent_hours),
            "precision": self.precision,
            "benign_change_episodes": dict(self.benign_change_episodes),
            "benign_change_total": self.benign_change_total,
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
            ]
        )
        lines += _table(["incident kind", "n", "det", "recall", "med TTD", "p90 TTD"], rows)
        lines.append("")
        benign = ", ".join(f"{k} {v}" for k, v in self.benign_change_episodes.items()) or "none"
        agent_benign = ", ".join(f"{k} {v}" for k, v in self.benign_agent_episodes.items())
        lines += [
            f"episodes: {len(self.episodes)} ({self.true_episodes} true, "
            f"{self.false_episodes} false); precision {_pct(self.precision)}",
            f"false episodes / 100 agent-hours: {self.false_per_100_agent_hours:.2f}",
            f"false episodes from benign fleet-wide changes: {self.benign_change_total}"
            f" ({benign})"
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
            lines += [
                f"  {r.id} {r.kind} {r.agent_id} {_iso(r.start)}..{_iso(r.end)}"
                for r in missed[:max_missed]
            ]
            if len(missed) > max_missed:
                lines.append(f"  ... and {len(missed) - max_missed} more")
            lines.append("")
        checks = self.check(targets)
        verdict = "PASS" if all(c.ok for c in checks) else "FAIL"
        lines.append(f"targets: {verdict}")
        lines += [f"  [{'ok' if c.ok else 'XX'}] {c.name}: {c.detail}" for c in checks]
        return "\n".join(lines)


def _rate(count: int, agent_hours: float) -> float:
    if agent_hours > 0:
        return count / agent_hours * 100.0
    return 0.0 if count == 0 else math.inf


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


# -- evaluate ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Label:
    id: str
    kind: str
    agent_id: str | None
    fleet: str
    start: float
    end: float
    benign: bool


def _labels(labels: Sequence[Mapping[str, Any]]) -> list[_Label]:
    out: list[_Label] = []
    for i, lab in enumerate(labels):
        try:
            start = parse_time(lab["start"])
            end = parse_time(lab.get("end", lab["start"]))
            out.append(
                _Label(
                    id=str(lab.get("id") or f"label-{i}"),
                    kind=str(lab["kind"]),
                    agent_id=lab.get("agent_id"),
                    fleet=str(lab.get("fleet") or "default"),
                    start=start,
                    end=max(start, end),
                    benign=bool(lab.get("benign", False)),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"label {i}: {exc!r} in {dict(lab)!r}") from exc
    return out


def evaluate(
    anomalies: Sequence[Anomaly],
    labels: Sequence[Mapping[str, Any]],
    summary: FleetSummary,
    *,
    grace_s: float = 300.0,
    episode_gap_s: float = 900.0,
    change_window_s: float = 7200.0,
) -> Evaluation:
    """Score a backtest's anomalies against labelled incidents and benign changes.

    Definitions (times are event times, in seconds):

    * **Incident**: a label with ``benign`` false and an ``agent_id``. Its *window* is
      ``[start, end + grace_s]``. It is **detected** if some anomaly of that agent has
      ``start <= ts <= end + grace_s``; **time to detect** (TTD) is the first such anomaly's
      ``ts - start``. Recall (detected / incidents) is reported per kind and overall, with
      the median and p90 (linear interpolation) TTD per kind over detected incidents.
    * **Episode**: one agent's anomalies sorted by time and chained while each is less than
      ``episode_gap_s`` after the previous one (what would page a human once). An episode
      is **true** if any of its anomalies falls in one of *that agent's* incident windows,
      otherwise **false**.
    * **False episodes per 100 agent-hours** = ``false / (agents * hours) * 100`` with
      ``hours = (summary.end - summary.start) / 3600``. **Episode precision** =
      ``true / (true + false)``.
    * **Benign-change episodes**: false episodes of agents in a fleet with a benign fleet-wide
      label (``agent_id`` None: ``model_upgrade``, ``tool_rollout``) whose first anomaly is
      within ``[change start, change start + change_window_s]``, counted per change kind
      (an episode matching two kinds counts for both; :attr:`Evaluation.benign_change_total`
      counts it once), unless a benign per-agent label of its own agent explains it (below).
      False episodes whose span ``[first, last anomaly]`` overlaps a benign
      per-agent label's ``[start, end + grace_s]`` (``error_burst``) are counted per label
      kind too.
    * **Per detector**: its anomalies, the true and false episodes it took part in, the false
      episodes made of its anomalies only, the incidents it flagged (in window) and flagged
      first.

    Parameters
    ----------
    anomalies
        The backtest's anomalies (any order).
    labels
        Label dicts as written by :func:`agentwatch.simulator.write_jsonl`: ``id``, ``kind``,
        ``agent_id`` (``None`` for fleet-wide), ``fleet``, ``start``, ``end`` (RFC 3339),
        ``benign``.
    summary
        Agents and event-time span of the replayed events.
    grace_s
        How long after an incident's end an anomaly still counts for it.
    episode_gap_s
        Anomalies of one agent closer than this form one episode.
    change_window_s
        How long after a benign fleet-wide change starts a false episode is blamed on it.

    Returns
    -------
    Evaluation

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> def anomaly(i, agent, minute, detector="rate"):
    ...     return Anomaly(anomaly_id=f"a{i}", ts=datetime(2026, 1, 5, 9, minute, tzinfo=UTC),
    ...                    agent_id=agent, detector=detector, kind="x", severity="error",
    ...                    score=2.0, threshold=1.0, observed=2.0, baseline=1.0, summary="s")
    >>> labels = [{"id": "inc-1", "kind": "runaway_loop", "agent_id": "a1", "fleet": "default",
    ...            "start": "2026-01-05T09:10:00Z", "end": "2026-01-05T09:20:00Z",
    ...            "benign": False}]
    >>> summary = FleetSummary(agents=10, start=parse_time("2026-01-05T09:00:00Z"),
    ...                        end=parse_time("2026-01-05T11:00:00Z"))
    >>> ev = evaluate([anomaly(1, "a1", 10), anomaly(2, "a1", 11), anomaly(3, "a2", 30)],
    ...               labels, summary)
    >>> ev.recall, ev.incidents[0].ttd_s, ev.true_episodes, ev.false_episodes
    (1.0, 0.0, 1, 1)
    >>> ev.false_per_100_agent_hours, ev.precision
    (5.0, 0.5)
    """
    if grace_s < 0 or episode_gap_s < 0 or change_window_s < 0:
        raise ValueError("grace_s, episode_gap_s and change_window_s must be >= 0")
    parsed = _labels(labels)
    incidents = sorted(
        (lab for lab in parsed if not lab.benign and lab.agent_id is not None),
        key=lambda lab: (lab.start, lab.id, lab.agent_id or ""),
    )
    changes = [lab for lab in parsed if lab.benign and lab.agent_id is None]
    benign_agent: dict[str, list[_Label]] = defaultdict(list)
    for lab in parsed:
        if lab.benign and lab.agent_id is not None:
            benign_agent[lab.agent_id].append(lab)
    windows: dict[str, list[_Label]] = defaultdict(list)
    for lab in incidents:
        windows[str(lab.agent_id)].append(lab)

    # one agent's anomalies, by time
    by_agent: dict[str, list[tuple[float, Anomaly]]] = defaultdict(list)
    for a in anomalies:
        by_agent[a.agent_id].append((a.ts.timestamp(), a))
    for items in by_agent.values():
        items.sort(key=lambda item: (item[0], item[1].anomaly_id))

    # incidents
    results: list[IncidentResult] = []
    for lab in incidents:
        hi = lab.end + grace_s
        hits = [(t, a) for t, a in by_agent.get(str(lab.agent_id), ()) if lab.start <= t <= hi]
        first = hits[0] if hits else None
        results.append(
            IncidentResult(
                id=lab.id,
                kind=lab.kind,
                agent_id=str(lab.agent_id),
                fleet=lab.fleet,
                start=lab.start,
                end=lab.end,
                detected=first is not None,
                ttd_s=None if first is None else first[0] - lab.start,
                first_detector=None if first is None else first[1].detector,
                detectors=tuple(sorted({a.detector for _, a in hits})),
            )
        )

    kinds: list[KindStats] = []
    for kind in sorted({r.kind for r in results}):
        rs = [r for r in results if r.kind == kind]
        ttds = [r.ttd_s for r in rs if r.ttd_s is not None]
        kinds.append(
            KindStats(
                kind=kind,
                incidents=len(rs),
                detected=sum(r.detected for r in rs),
                median_ttd_s=_quantile(ttds, 0.5),
                p90_ttd_s=_quantile(ttds, 0.9),
                max_ttd_s=max(ttds) if ttds else None,
            )
        )

    # episodes
    chains: list[tuple[str, list[tuple[float, Anomaly]]]] = []
    for agent_id in sorted(by_agent):
        chain: list[tuple[float, Anomaly]] = []
        for item in by_agent[agent_id]:
            if chain and item[0] - chain[-1][0] >= episode_gap_s:
                chains.append((agent_id, chain))
                chain = []
            chain.append(item)
        if chain:
            chains.append((agent_id, chain))
    episodes = [
        _episode(
            agent_id=agent_id,
            chain=chain,
            windows=windows,
            changes=changes,
            benign_agent=benign_agent,
            grace_s=grace_s,
            change_window_s=change_window_s,
        )
        for agent_id, chain in chains
    ]
    episodes.sort(key=lambda e: (e.start, e.agent_id))

    change_counts: Counter[str] = Counter()
    agent_counts: Counter[str] = Counter()
    change_kinds = {c.kind for c in changes}
    false_by_fleet: Counter[str] = Counter()
    for ep in episodes:
        if ep.true:
            continue
        false_by_fleet[ep.fleet] += 1
        for cause in ep.benign_causes:
            (change_counts if cause in change_kinds else agent_counts)[cause] += 1

    # detectors
    anomaly_counts = Counter(a.detector for a in anomalies)
    true_eps: Counter[str] = Counter()
    false_eps: Counter[str] = Counter()
    sole: Counter[str] = Counter()
    for ep in episodes:
        for det in ep.detectors:
            (true_eps if ep.true else false_eps)[det] += 1
        if not ep.true and len(ep.detectors) == 1:
            sole[ep.detectors[0]] += 1
    flagged: Counter[str] = Counter()
    first_hits: Counter[str] = Counter()
    for r in results:
        flagged.update(r.detectors)
        if r.first_detector is not None:
            first_hits[r.first_detector] += 1
    detectors = tuple(
        DetectorStats(
            detector=det,
            anomalies=anomaly_counts[det],
            true_episodes=true_eps[det],
            false_episodes=false_eps[det],
            sole_false_episodes=sole[det],
            incidents_detected=flagged[det],
            first_detections=first_hits[det],
            false_per_100_agent_hours=_rate(false_eps[det], summary.agent_hours),
        )
        for det in sorted(anomaly_counts)
    )

    return Evaluation(
        summary=summary,
        grace_s=grace_s,
        episode_gap_s=episode_gap_s,
        change_window_s=change_window_s,
        anomalies=len(anomalies),
        incidents=tuple(results),
        kinds=tuple(kinds),
        episodes=tuple(episodes),
        detectors=detectors,
        benign_change_episodes={k: change_counts[k] for k in sorted(change_kinds)},
        benign_agent_episodes=dict(sorted(agent_counts.items())),
        false_by_fleet=dict(sorted(false_by_fleet.items())),
    )


def _episode(
    *,
    agent_id: str,
    chain: list[tuple[float, Anomaly]],
    windows: Mapping[str, list[_Label]],
    changes: list[_Label],
    benign_agent: Mapping[str, list[_Label]],
    grace_s: float,
    change_window_s: float,
) -> Episode:
    start, end = chain[0][0], chain[-1][0]
    fleet = chain[0][1].fleet
    hit = tuple(
        sorted(
            {
                lab.id
                for lab in windows.get(agent_id, ())
                for t, _ in chain
                if lab.start <= t <= lab.end + grace_s
            }
        )
    )
    causes: set[str] = set()
    if not hit:
        # the agent's own benign label (an error burst on it) is the more specific cause: an
        # episode it explains is not blamed on a fleet-wide change that happened nearby
        causes.update(
            lab.kind
            for lab in benign_agent.get(agent_id, ())
            if start <= lab.end + grace_s and lab.start <= end
        )
        if not causes:
            causes.update(
                c.kind
                for c in changes
                if c.fleet == fleet and c.start <= start <= c.start + change_window_s
            )
    return Episode(
        agent_id=agent_id,
        fleet=fleet,
        start=start,
        end=end,
        anomalies=len(chain),
        anomaly_ids=tuple(a.anomaly_id for _, a in chain),
        detectors=tuple(sorted({a.detector for _, a in chain})),
        true=bool(hit),
        incident_ids=hit,
        benign_causes=tuple(sorted(causes)),
    )
