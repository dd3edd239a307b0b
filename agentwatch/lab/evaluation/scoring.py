"""Scoring a backtest: :func:`evaluate` matches anomalies with labels."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from agentwatch.lab.evaluation.evaluation import Evaluation
from agentwatch.lab.evaluation.results import (
    DetectorStats,
    Episode,
    FleetSummary,
    IncidentResult,
    KindStats,
    quantile,
    rate_per_100,
)
from agentwatch.lab.labels import Label
from agentwatch.schemas import Anomaly

__all__ = ["evaluate"]


def evaluate(
    anomalies: Sequence[Anomaly],
    labels: Sequence[Label],
    summary: FleetSummary,
    *,
    grace_s: float = 300.0,
    episode_gap_s: float = 900.0,
    change_window_s: float = 7200.0,
    events: Mapping[str, Sequence[float]] | None = None,
    failed: Mapping[str, Sequence[float]] | None = None,
    egress: Mapping[str, Sequence[float]] | None = None,
    costed: Mapping[str, Sequence[float]] | None = None,
    costs: Mapping[str, Sequence[float]] | None = None,
) -> Evaluation:
    """Score a backtest's anomalies against labelled incidents and benign changes.

    Definitions (times are event times, in seconds):

    * **Incident**: a label with ``benign`` false and an ``agent_id``. Its *window* is
      ``[start, end + grace_s]``. It is **detected** if some anomaly of that agent has
      ``start <= ts <= end + grace_s``; **time to detect** (TTD) is the first such anomaly's
      ``ts - start``. Recall (detected / incidents) is reported per kind and overall, with
      the median and p90 (linear interpolation) TTD per kind over detected incidents.
    * **Cost ramps** (labels with ``crosses_2x_at``): how long after the cost rate crossed
      twice its starting level the ramp was first flagged; a *fast* ramp reaches 3x within
      2 h of its start (``crosses_3x_at``), and the target is to flag those within
      ``Targets.max_after_2x_s`` of crossing 2x.
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
        The simulation's labels (:meth:`agentwatch.lab.sim.Simulation.labels`, or
        :func:`agentwatch.lab.labels.load_labels` of a file).
    summary
        Agents and event-time span of the replayed events.
    grace_s
        How long after an incident's end an anomaly still counts for it.
    episode_gap_s
        Anomalies of one agent closer than this form one episode.
    change_window_s
        How long after a benign fleet-wide change starts a false episode is blamed on it.
    events
        Event times (sorted) of incident agents, if known: then each detected incident also
        says how many of its agent's events came from its start to the first detection
        (``events_to_detect``, the evidence a detector had; a sparse agent's minutes say
        little about a detector), and every incident how many of its agent's events fell
        in ``[start, end]`` (``window_events``).
    failed
        Times (sorted) of the failed calls (``status`` other than ``ok``) of incident agents,
        if known: then every incident says how many fell in ``[start, end]``
        (``window_failed``). With ``window_events``, what a missed incident left to detect:
        an error storm with no failed call, or a shift of mix in four calls, has no evidence
        any detector could use.
    egress, costed
        Times (sorted) of the egress calls and of the calls with a cost of incident agents,
        if known. With ``events`` and ``failed`` they say when each incident's evidence began
        (``first_evidence_s``, seconds after its start): its agent's first egress call of an
        exfiltration, first failed call of an error storm or a privilege probe, first call
        with a cost of a cost explosion or ramp, first event of any other kind. A detection
        ``after_evidence_s`` later is the detectors' own delay; the rest of the time to
        detect is the incident's, which had shown nothing yet.
    costs
        The costs of the ``costed`` calls, in the same order, if known: then a cost
        explosion's evidence begins at its agent's first call in the window costing at least
        ``EXPLOSION_FACTOR`` (2) times the median of its last ``EXPLOSION_HISTORY`` (50)
        calls with a cost before the start (a context growing over minutes shows nothing on
        its first calls; its first call with a cost, if the agent had none before).

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
    >>> from agentwatch.lab.labels import parse_time
    >>> labels = [Label.from_dict({"id": "inc-1", "kind": "runaway_loop", "agent_id": "a1",
    ...                            "start": "2026-01-05T09:10:00Z",
    ...                            "end": "2026-01-05T09:20:00Z"})]
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
    parsed = list(labels)
    incidents = sorted(
        (lab for lab in parsed if not lab.benign and lab.agent_id is not None),
        key=lambda lab: (lab.start_s, lab.id, lab.agent_id or ""),
    )
    changes = [lab for lab in parsed if lab.benign and lab.agent_id is None]
    benign_agent: dict[str, list[Label]] = defaultdict(list)
    for lab in parsed:
        if lab.benign and lab.agent_id is not None:
            benign_agent[lab.agent_id].append(lab)
    windows: dict[str, list[Label]] = defaultdict(list)
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
        lo, hi = lab.start_s, lab.end_s + grace_s
        hits = [(t, a) for t, a in by_agent.get(str(lab.agent_id), ()) if lo <= t <= hi]
        first = hits[0] if hits else None
        times = None if events is None else events.get(str(lab.agent_id))
        fails = None if failed is None else failed.get(str(lab.agent_id))
        costed_times = None if costed is None else costed.get(str(lab.agent_id))
        evidence = {
            None: times,
            "failed": fails,
            "egress": None if egress is None else egress.get(str(lab.agent_id)),
            "costed": costed_times,
        }[_EVIDENCE_OF.get(lab.kind)]
        first_evidence = _first_after(evidence, lo, lab.end_s)
        agent_costs = None if costs is None else costs.get(str(lab.agent_id))
        if lab.kind == "cost_explosion" and costed_times and agent_costs is not None:
            if len(agent_costs) != len(costed_times):
                raise ValueError(
                    f"agent {lab.agent_id}: {len(agent_costs)} costs for "
                    f"{len(costed_times)} calls with a cost"
                )
            first_evidence = _first_jump(costed_times, agent_costs, lo, lab.end_s)
        seen = None
        if times is not None and first is not None:
            seen = bisect_right(times, first[0]) - bisect_left(times, lo)
        results.append(
            IncidentResult(
                id=lab.id,
                kind=lab.kind,
                agent_id=str(lab.agent_id),
                fleet=lab.fleet,
                start=lo,
                end=lab.end_s,
                detected=first is not None,
                ttd_s=None if first is None else first[0] - lo,
                events_to_detect=seen,
                window_events=_within(times, lo, lab.end_s),
                window_failed=_within(fails, lo, lab.end_s),
                first_evidence_s=first_evidence,
                first_detector=None if first is None else first[1].detector,
                detectors=tuple(sorted({a.detector for _, a in hits})),
                crosses_2x=lab.crosses_2x_s,
                fast_ramp=_fast_ramp(lab),
            )
        )

    kinds: list[KindStats] = []
    for kind in sorted({r.kind for r in results}):
        rs = [r for r in results if r.kind == kind]
        ttds = [r.ttd_s for r in rs if r.ttd_s is not None]
        seens = [float(r.events_to_detect) for r in rs if r.events_to_detect is not None]
        afters = [r.after_evidence_s for r in rs if r.after_evidence_s is not None]
        kinds.append(
            KindStats(
                kind=kind,
                incidents=len(rs),
                detected=sum(r.detected for r in rs),
                median_ttd_s=quantile(ttds, 0.5),
                p90_ttd_s=quantile(ttds, 0.9),
                max_ttd_s=max(ttds) if ttds else None,
                median_events_to_detect=quantile(seens, 0.5),
                median_after_evidence_s=quantile(afters, 0.5),
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
            false_per_100_agent_hours=rate_per_100(false_eps[det], summary.agent_hours),
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
        change_agent_hours=_change_agent_hours(changes, summary, change_window_s),
    )


def _change_agent_hours(
    changes: Sequence[Label], summary: FleetSummary, change_window_s: float
) -> float | None:
    """The agent-hours inside the change windows: each change's fleet over its window,
    within the replayed span (``None`` without changes or when a changed fleet's size is
    unknown)."""
    if not changes:
        return None
    inside = 0.0
    for change in changes:
        agents = summary.agents_by_fleet.get(str(change.fleet)) or change.params.get("agents")
        if not agents:
            return None
        lo = max(change.start_s, summary.start)
        hi = min(change.start_s + change_window_s, summary.end)
        inside += float(agents) * max(hi - lo, 0.0) / 3600.0
    return inside


def _episode(
    *,
    agent_id: str,
    chain: list[tuple[float, Anomaly]],
    windows: Mapping[str, list[Label]],
    changes: list[Label],
    benign_agent: Mapping[str, list[Label]],
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
                if lab.start_s <= t <= lab.end_s + grace_s
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
            if start <= lab.end_s + grace_s and lab.start_s <= end
        )
        if not causes:
            causes.update(
                c.kind
                for c in changes
                if c.fleet == fleet and c.start_s <= start <= c.start_s + change_window_s
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


def _within(times: Sequence[float] | None, lo: float, hi: float) -> int | None:
    """How many of ``times`` (sorted) fall in ``[lo, hi]``; ``None`` if not known."""
    if times is None:
        return None
    return bisect_right(times, hi) - bisect_left(times, lo)


#: Which of an incident agent's calls are its evidence, per incident kind (default: any event).
_EVIDENCE_OF = {
    "error_storm": "failed",
    "privilege_probing": "failed",
    "exfiltration": "egress",
    "cost_explosion": "costed",
    "cost_drift": "costed",
}


def _first_after(times: Sequence[float] | None, lo: float, hi: float) -> float | None:
    """Seconds from ``lo`` to the first of ``times`` (sorted) in ``[lo, hi]``; ``None`` if
    there is none or they are not known."""
    if not times:
        return None
    i = bisect_left(times, lo)
    return times[i] - lo if i < len(times) and times[i] <= hi else None


#: A cost explosion shows once a call costs this many times its agent's usual ...
EXPLOSION_FACTOR = 2.0
#: ... the median of its last this many calls with a cost before the explosion's start.
EXPLOSION_HISTORY = 50


def _first_jump(
    times: Sequence[float], costs: Sequence[float], lo: float, hi: float
) -> float | None:
    """Seconds from ``lo`` to the first call in ``[lo, hi]`` costing ``EXPLOSION_FACTOR``
    times the median cost of the ``EXPLOSION_HISTORY`` calls before ``lo`` (``times``
    sorted, ``costs`` theirs); the first call at all if there were none before; ``None`` if
    no call in the window qualifies.

    Examples
    --------
    >>> _first_jump([0.0, 1.0, 2.0, 10.0, 11.0, 12.0], [1.0, 1.2, 0.8, 1.5, 2.5, 9.0], 5.0, 20.0)
    6.0
    >>> _first_jump([10.0, 11.0], [1.0, 5.0], 5.0, 20.0)  # no history: its first call
    5.0
    """
    start = bisect_left(times, lo)
    before = sorted(costs[max(0, start - EXPLOSION_HISTORY) : start])
    if not before:
        return _first_after(times, lo, hi)
    mid = len(before) // 2
    usual = before[mid] if len(before) % 2 else 0.5 * (before[mid - 1] + before[mid])
    for i in range(start, len(times)):
        if times[i] > hi:
            break
        if costs[i] >= EXPLOSION_FACTOR * usual:
            return times[i] - lo
    return None


def _fast_ramp(lab: Label) -> bool:
    """A cost ramp that reaches 3x its starting cost rate within 2 h of its start."""
    three = lab.crosses_3x_s
    return three is not None and three - lab.start_s <= 7200.0


def incident_agents(labels: Sequence[Label]) -> frozenset[str]:
    """The agents of the labelled incidents: those whose events :func:`evaluate` counts
    (``run_backtest(..., track=incident_agents(labels))``)."""
    return frozenset(str(lab.agent_id) for lab in labels if not lab.benign and lab.agent_id)
