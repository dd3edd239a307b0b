"""The parts of a scored backtest: what was replayed, incidents, episodes, per-kind and
per-detector figures."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from agentwatch.schemas import ActionEvent

__all__ = ["DetectorStats", "Episode", "FleetSummary", "IncidentResult", "KindStats"]


def iso(ts: float) -> str:
    text = datetime.fromtimestamp(ts, UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation quantile (numpy's default); ``None`` for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rank_quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile, the one the benchmarks print: the value at rank ``int(q * n)``
    of the sorted values (the largest for ``q`` near 1); ``nan`` for no values.

    >>> rank_quantile([5.0, 1.0, 3.0, 2.0], 0.5), rank_quantile(list(range(100)), 0.99)
    (3.0, 99)
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def rate_per_100(count: int, agent_hours: float) -> float:
    """``count / agent_hours * 100`` (``inf`` for a count in no time)."""
    if agent_hours > 0:
        return count / agent_hours * 100.0
    return 0.0 if count == 0 else math.inf


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
            "start": iso(self.start),
            "end": iso(self.end),
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
    events_to_detect: int | None = None
    """The agent's events from the incident start to the first detection, inclusive (``None``
    if missed or not counted): the evidence the detectors had."""
    window_events: int | None = None
    """The agent's events from the incident's start to its end (``None``: not counted)."""
    window_failed: int | None = None
    """... of which failed (``status`` other than ``ok``; ``None``: not counted)."""
    first_evidence_s: float | None = None
    """Seconds from the start to the agent's first call that is evidence of the incident's
    kind (its first egress call of an exfiltration, failed call of an error storm or a
    privilege probe, call costing twice its usual of a cost explosion, call with a cost of
    a ramp, event of any other kind); ``None``: none in the window, or not counted."""
    crosses_2x: float | None = None
    """For a cost ramp: when its cost rate reaches twice the starting one."""
    fast_ramp: bool = False
    """A cost ramp that reaches three times its starting cost rate within two hours."""

    @property
    def after_2x_s(self) -> float | None:
        """For a detected cost ramp: first detection minus the 2x crossing (negative when
        flagged before it)."""
        if self.crosses_2x is None or self.ttd_s is None:
            return None
        return self.start + self.ttd_s - self.crosses_2x

    @property
    def after_evidence_s(self) -> float | None:
        """For a detected incident with evidence: the time to detect less
        ``first_evidence_s``, the detectors' own delay (negative when flagged before the
        first call of its kind, on other evidence)."""
        if self.ttd_s is None or self.first_evidence_s is None:
            return None
        return self.ttd_s - self.first_evidence_s

    def describe(self) -> str:
        """One line: id, kind, agent, window and, when counted, what it left to detect (the
        agent's events and failed calls from start to end), as lists of misses print it.

        Examples
        --------
        >>> r = IncidentResult("inc-1", "error_storm", "a1", "f", 0.0, 60.0, False, None, None,
        ...                    (), window_events=7, window_failed=0)
        >>> r.describe()
        'inc-1 error_storm a1 1970-01-01T00:00:00Z..1970-01-01T00:01:00Z (7 events, 0 failed)'
        """
        line = f"{self.id} {self.kind} {self.agent_id} {iso(self.start)}..{iso(self.end)}"
        if self.window_events is None:
            return line
        failed = "" if self.window_failed is None else f", {self.window_failed} failed"
        return f"{line} ({self.window_events} events{failed})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out = {
            "id": self.id,
            "kind": self.kind,
            "agent_id": self.agent_id,
            "fleet": self.fleet,
            "start": iso(self.start),
            "end": iso(self.end),
            "detected": self.detected,
            "ttd_s": self.ttd_s,
            "events_to_detect": self.events_to_detect,
            "window_events": self.window_events,
            "window_failed": self.window_failed,
            "first_evidence_s": self.first_evidence_s,
            "after_evidence_s": self.after_evidence_s,
            "first_detector": self.first_detector,
            "detectors": list(self.detectors),
        }
        if self.crosses_2x is not None:
            out["crosses_2x"] = iso(self.crosses_2x)
            out["after_2x_s"] = self.after_2x_s
            out["fast_ramp"] = self.fast_ramp
        return out


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
            "start": iso(self.start),
            "end": iso(self.end),
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
    median_events_to_detect: float | None = None
    """Median of the detected incidents' ``events_to_detect`` (``None`` if not counted)."""
    median_after_evidence_s: float | None = None
    """Median of the detected incidents' ``after_evidence_s``: the detectors' own delay,
    from the first call of the incident's kind (``None`` if not counted)."""

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
            "median_events_to_detect": self.median_events_to_detect,
            "median_after_evidence_s": self.median_after_evidence_s,
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
            "false_per_100_agent_hours": finite(self.false_per_100_agent_hours),
        }
