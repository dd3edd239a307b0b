"""``FleetOutlier``: an agent whose recent behaviour changed unlike its fleet peers'."""

from __future__ import annotations

import math
from collections import deque
from itertools import chain
from typing import Any, Final

import numpy as np

from agentwatch.detectors.base import JSON, Finding, OneObjectFleet, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.features import WindowFeatures, window_features
from agentwatch.schemas import ActionEvent

__all__ = ["FEATURES", "FleetOutlier"]

FEATURES: Final = ("events_per_min", "cost_per_min", "cost_per_event", "failure_share", "denials")
"""The five deviations, in vector order; a finding's ``kind`` is the one that stood out."""
_LABELS: Final = ("events per minute", "cost per minute", "cost per event", "failure share",
                  "denials")  # fmt: skip
_SCALE_FLOOR: Final = (0.1, 0.1, 0.1, 0.02, 0.5)  # least robust spread of each deviation
_MAD_TO_SIGMA: Final = 1.4826
_Z_CLIP: Final = 1e6
_RING: Final = 40  # recent events kept per agent for evidence (in memory)
_NEVER: Final = -math.inf
_EULER_GAMMA: Final = 0.5772156649015329
_LN2: Final = math.log(2.0)


def _avg_path(n: float) -> float:
    """Average path length of an unsuccessful search in a BST of ``n`` nodes (Liu et al.)."""
    if n <= 1.0:
        return 0.0
    if n <= 2.0:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + _EULER_GAMMA) - 2.0 * (n - 1.0) / n


class _Forest:
    """A fitted ``IsolationForest`` flattened into lists: one score costs ~50 us, not ~5 ms.

    Scores equal ``-IsolationForest.score_samples`` (0.5 marks the ``contamination="auto"``
    boundary; near 1 is isolated at once, below 0.5 is inside the crowd).
    """

    __slots__ = ("norm", "trees")

    def __init__(self, train: np.ndarray[Any, Any], n_estimators: int, seed: int) -> None:
        from sklearn.ensemble import IsolationForest  # heavy: see FleetOutlier.prepare

        model = IsolationForest(
            n_estimators=n_estimators, random_state=seed, contamination="auto"
        ).fit(train)
        trees: list[tuple[list[int], list[float], list[int], list[int], list[float]]] = []
        for estimator in model.estimators_:
            tree = estimator.tree_
            left = tree.children_left.tolist()
            right = tree.children_right.tolist()
            samples = tree.n_node_samples.tolist()
            leaf = [0.0] * len(left)
            stack = [(0, 0)]
            while stack:
                node, depth = stack.pop()
                if left[node] == -1:
                    leaf[node] = depth + _avg_path(samples[node])
                else:
                    stack.append((left[node], depth + 1))
                    stack.append((right[node], depth + 1))
            trees.append((tree.feature.tolist(), tree.threshold.tolist(), left, right, leaf))
        self.trees = trees
        self.norm = len(trees) * _avg_path(float(model.max_samples_))

    def score(self, x: list[float]) -> float:
        """Anomaly score of one vector (compared in float32, as scikit-learn's trees do)."""
        xs = np.asarray(x, dtype=np.float32).tolist()
        total = 0.0
        for feature, threshold, left, right, leaf in self.trees:
            node = 0
            child = left[0]
            while child != -1:
                node = child if xs[feature[node]] <= threshold[node] else right[node]
                child = left[node]
            total += leaf[node]
        return 2.0 ** (-total / self.norm) if self.norm else 1.0


class _Fleet:
    """In-memory state of one fleet (``fleet_state["fleet"]``).

    Across workers: ``vectors`` holds the latest deviations of this worker's own agents,
    ``remote`` the other workers' (:meth:`absorb`); agents are disjoint across workers, so
    the fleet is their union, taken in agent order (the same order on any worker, so the
    same forest).
    """

    __slots__ = (
        "center",
        "epoch",
        "findings",
        "forest",
        "peers",
        "recent",
        "remote",
        "scale",
        "stats_t",
        "train",
        "vectors",
    )

    def __init__(self) -> None:
        self.vectors: dict[str, tuple[float, list[float]]] = {}  # agent -> (ts, deviations)
        self.remote: dict[str, tuple[float, list[float]]] = {}  # the other workers' agents
        self.recent: dict[str, deque[tuple[str, str, str, float]]] = {}
        self.findings: dict[str, Finding] = {}  # agent -> its current finding while flagged
        self.stats_t = -math.inf
        self.center: list[float] | None = None
        self.scale: list[float] = list(_SCALE_FLOOR)
        self.peers = 0
        self.epoch: int | None = None
        self.train: np.ndarray[Any, Any] | None = None
        self.forest: _Forest | None = None

    def fleet_vectors(self, horizon: float) -> list[list[float]]:
        """The latest deviations of every agent of the fleet seen since ``horizon`` (this
        worker's and the others'), in agent order."""
        union = dict(self.remote)
        union.update(self.vectors)  # ours win: an agent that moved here since
        return [union[a][1] for a in sorted(union) if union[a][0] >= horizon]

    def partial(self) -> dict[str, Any]:
        """This worker's agents' latest deviations, JSON-able."""
        return {"v": {agent: [ts, vec] for agent, (ts, vec) in self.vectors.items()}}

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The other workers' agents (the newest vector of an agent two of them name)."""
        remote: dict[str, tuple[float, list[float]]] = {}
        for part in partials:
            for agent, (ts, vec) in part["v"].items():
                seen = remote.get(agent)
                if seen is None or ts > seen[0]:
                    remote[agent] = (float(ts), [float(x) for x in vec])
        self.remote = remote

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own agents' vectors from before a restart (newer ones stay)."""
        for agent, (ts, vec) in partial["v"].items():
            if agent not in self.vectors:
                self.vectors[agent] = (float(ts), [float(x) for x in vec])


@register_detector
class FleetOutlier(OneObjectFleet):
    """An agent whose last minutes moved away from its own normal unlike its fleet peers'.

    Every ``score_every_s`` of event time per agent, the agent's window (the last
    ``window_s`` of its baseline) is turned into five *deviations* from the agent's own
    reference (an exponentially weighted average of its past windows, half-life
    ``reference_half_life_s``, that never learns from a flagged window):

    * events per minute, cost per minute, cost per event: log ratios, shrunk toward 0 by a
      prior of ``prior_events`` usual events (a window with three events cannot look wild);
    * failure share: the difference of shares, shrunk the same way;
    * denials: the binomial surprise of the window's denied count,
      ``(denied - n p) / sqrt(n p (1 - p) + 1)`` for ``n`` events at the usual denied share
      ``p`` (a share would dilute a probe among a busy agent's many calls).

    Each deviation is compared with the fleet's *current* deviations (median and MAD of the
    latest vector of every agent of the fleet seen in the last ``refit_s``, refreshed every
    ``stats_every_s``): a model upgrade or a diurnal swing moves the whole fleet, so nobody
    stands out. A scoring is a candidate when one deviation has a robust z of at least
    ``z_threshold`` (upwards: busier, costlier or failing more, never quieter). After
    ``confirm`` consecutive candidates, a scikit-learn ``IsolationForest`` (``n_estimators``
    trees, ``random_state=seed``, ``contamination="auto"``) fitted on the fleet's robust-z
    vectors of the current ``refit_s`` epoch (epochs aligned to event time; the forest is
    fitted lazily, on the vectors as they were at the epoch's first scoring) must also place
    the agent's vector outside the crowd (score at least ``score_threshold``). Then a
    finding is returned, and repeated on every event of the agent until a scoring clears
    it. Candidate windows teach neither the agent's reference nor the fleet's statistics.

    Catches what makes one agent stand out of its peers on volume, spend or failures:
    cost explosions, error storms, privilege probing (denials), steep cost drifts and the
    fastest runaway loops. It is blind to a few odd events (exfiltration, unapproved
    high-risk calls), to action-mix changes and to anything the whole fleet does together.
    Needs at least ``min_agents`` active agents in the fleet and ``min_history_s`` of the
    agent's own history; until then it stays silent.

    Parameters
    ----------
    window_s
        Length of the scored window in seconds of event time (default 300).
    score_every_s
        At most one scoring per agent per this many seconds (default 30).
    refit_s
        Isolation-forest epoch (default 600 s); also how long an idle agent's last vector
        counts as part of the fleet.
    stats_every_s
        How often the fleet median and MAD are recomputed (default 60 s).
    min_agents
        Fewest agents with a recent vector for the fleet to be compared (default 12).
    min_history_s
        Event time an agent must have been seen before it is scored (default 1800).
    reference_half_life_s
        Half-life of the agent's own reference, in seconds of event time (default 3600).
    prior_events
        Pseudo-events of the agent's usual behaviour added to each window (default 8).
    min_cost_per_event
        Floor of the usual cost per event in USD (default 0.0001), so that an agent that
        never spent money is not an outlier for its first cheap LLM call.
    z_threshold
        Robust z (vs the fleet) a deviation needs to make a candidate (default 10).
    score_threshold
        Isolation score a confirmed candidate needs (default 0.4). The forest vetoes agents
        that sit inside the fleet's crowd on all deviations taken together. Scores of true
        single-deviation outliers run from 0.43 to 0.75 (an isolation forest cannot
        extrapolate past its training range), so 0.5, the ``contamination="auto"`` cut,
        would drop some error storms.
    confirm
        Consecutive candidate scorings before the forest is asked (default 2).
    n_estimators
        Trees of the isolation forest (default 50; one fit takes ~40 ms).
    seed
        ``random_state`` of the isolation forest (default 0).

    Examples
    --------
    Twelve agents with a steady 5 % failure rate; after 40 minutes ``a0`` starts failing
    most of its calls:

    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.schemas import ActionEvent
    >>> det = FleetOutlier(min_history_s=600.0)
    >>> baselines = {f"a{i}": AgentBaseline(f"a{i}", "ops") for i in range(12)}
    >>> states, fleet_state, found = {a: {} for a in baselines}, {}, []
    >>> t0 = datetime(2026, 1, 5, 9, tzinfo=UTC)
    >>> for step in range(300):  # one event per agent every 10 s for 50 minutes
    ...     for i, (agent, b) in enumerate(baselines.items()):
    ...         bad = agent == "a0" and step >= 240
    ...         failed = (step + i) % 20 == 0 or (bad and step % 4 != 0)
    ...         e = ActionEvent(event_id=f"{agent}-{step}", agent_id=agent, fleet="ops",
    ...                         action="query", ts=t0 + timedelta(seconds=10 * step + i),
    ...                         status="error" if failed else "ok", cost_usd=0.002)
    ...         found += [(agent, step, f) for f in det.update(e, b, states[agent], fleet_state)]
    ...         b.update(e)
    >>> agent, step, finding = found[0]
    >>> agent, step, finding.kind, {a for a, _, _ in found}
    ('a0', 255, 'failure_share', {'a0'})
    >>> print(finding.summary)  # doctest: +NORMALIZE_WHITESPACE
    a0 stands out in fleet ops on failure share: 36% of 33 events failed in the last 5.5 min
    vs 5.9% usual (+30 pts), while the fleet's median agent moved -1.3 pts; robust z +12.9
    among 12 active agents, isolation score 0.52.
    >>> finding.evidence[:2], finding.actions
    (('a0-255', 'a0-254'), ('query',))
    """

    name = "fleet_outlier"
    fleet_key = "fleet"

    def new_fleet(self) -> _Fleet:
        """An empty fleet (see :class:`_Fleet`)."""
        return _Fleet()

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        score_every_s: float = 30.0,
        refit_s: float = 600.0,
        stats_every_s: float = 60.0,
        min_agents: int = 12,
        min_history_s: float = 1800.0,
        reference_half_life_s: float = 3600.0,
        prior_events: float = 8.0,
        min_cost_per_event: float = 1e-4,
        z_threshold: float = 10.0,
        score_threshold: float = 0.4,
        confirm: int = 2,
        n_estimators: int = 50,
        seed: int = 0,
    ) -> None:
        for key, value in (
            ("window_s", window_s),
            ("score_every_s", score_every_s),
            ("refit_s", refit_s),
            ("stats_every_s", stats_every_s),
            ("reference_half_life_s", reference_half_life_s),
            ("prior_events", prior_events),
            ("min_cost_per_event", min_cost_per_event),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{key} must be a positive number, got {value}")
        if min_agents < 3 or confirm < 1 or n_estimators < 1:
            raise ValueError("min_agents must be >= 3, confirm and n_estimators >= 1")
        self.window_s = window_s
        self.score_every_s = score_every_s
        self.refit_s = refit_s
        self.stats_every_s = stats_every_s
        self.min_agents = min_agents
        self.min_history_s = min_history_s
        self.reference_half_life_s = reference_half_life_s
        self.prior_events = prior_events
        self.min_cost_per_event = min_cost_per_event
        self.z_threshold = z_threshold
        self.score_threshold = score_threshold
        self.confirm = confirm
        self.n_estimators = n_estimators
        self.seed = seed

    def prepare(self) -> None:
        """Import scikit-learn now (~1 s) rather than in the middle of the stream."""
        import sklearn.ensemble  # noqa: F401 - the first forest fit needs it

    # ------------------------------------------------------------------ per event

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Score the agent's window at most every ``score_every_s``; see the class doc."""
        fleet: _Fleet | None = fleet_state.get("fleet")
        if fleet is None:
            fleet = self.fleet_object(fleet_state)
        agent = event.agent_id
        ring = fleet.recent.get(agent)
        if ring is None:
            ring = fleet.recent[agent] = deque(maxlen=_RING)
        ring.append((event.event_id, event.action, event.status, event.cost_usd))
        ts = event.ts_epoch
        if ts - state.get("t", _NEVER) < self.score_every_s:
            if state.get("h", 0) >= self.confirm:
                cached = fleet.findings.get(agent)
                if cached is not None:
                    return [cached]
            return []
        state["t"] = ts
        return self._score(agent, ts, baseline, state, fleet)

    # ------------------------------------------------------------------ scoring

    def _score(
        self,
        agent: str,
        ts: float,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet: _Fleet,
    ) -> list[Finding]:
        first = baseline.first_seen
        if first is None:
            return []
        stats = baseline.window(self.window_s, ts)
        minutes = stats.seconds / 60.0
        if minutes < 1.0:  # noqa: PLR1730 - cheaper than max() on this path
            minutes = 1.0
        n = stats.count
        cost = stats.cost_usd
        failed = stats.errors + stats.denied
        denied = stats.denied
        ref: list[float] | None = state.get("r")
        if ref is None:
            state["r"] = [n / minutes, cost / minutes, failed / minutes, denied / minutes]
            state["u"] = ts
            return []
        age = ts - first
        if age < self.min_history_s:
            weight = min(max(ts - state["u"], 0.0) / age, 1.0) if age > 0.0 else 1.0
            _learn(state, ref, weight, ts, minutes, n, cost, failed, denied)
            return []

        # deviations from the agent's own reference, shrunk by a prior of usual events
        k = self.prior_events
        rate = ref[0] if ref[0] > 1e-6 else 1e-6
        cpe = max(ref[1] / rate, self.min_cost_per_event)
        p_fail = min(ref[2] / rate, 1.0)
        p_denied = min(ref[3] / rate, 1.0)
        vec = [
            math.log((n + 2.0) / (ref[0] * minutes + 2.0)),
            math.log((cost + 2.0 * cpe) / (ref[1] * minutes + 2.0 * cpe)),
            math.log((cost + k * cpe) / ((n + k) * cpe)),
            (failed + k * p_fail) / (n + k) - p_fail,
            (denied - n * p_denied) / math.sqrt(n * p_denied * (1.0 - p_denied) + 1.0),
        ]

        if ts - fleet.stats_t >= self.stats_every_s:
            self._refresh(fleet, ts)
        center = fleet.center
        z_best = _NEVER
        best = 0
        if center is not None:
            epoch = int(ts // self.refit_s)
            if epoch != fleet.epoch:
                self._new_epoch(fleet, epoch, ts)
            scale = fleet.scale
            for j in range(5):
                z = (vec[j] - center[j]) / scale[j]
                if z > z_best:
                    best, z_best = j, z
        if z_best < self.z_threshold:  # the common case: no candidate
            if "h" in state:
                del state["h"]
                fleet.findings.pop(agent, None)
            if z_best < 0.5 * self.z_threshold:  # learn only from windows far from suspect
                weight = -math.expm1(
                    -_LN2
                    * min(max(ts - state["u"], 0.0), self.window_s)
                    / self.reference_half_life_s
                )
                _learn(state, ref, weight, ts, minutes, n, cost, failed, denied)
                fleet.vectors[agent] = (ts, vec)
            return []

        # a candidate: it must persist, then the isolation forest of this epoch must agree
        assert center is not None
        hits = int(state.get("h", 0)) + 1
        state["h"] = hits
        fleet.vectors.pop(agent, None)  # not part of the fleet's normal while suspect
        if hits < self.confirm:
            return []
        forest = fleet.forest
        if forest is None:
            if fleet.train is None:
                return []
            forest = fleet.forest = _Forest(fleet.train, self.n_estimators, self.seed)
        scale = fleet.scale
        iso = forest.score(
            [max(min((vec[j] - center[j]) / scale[j], _Z_CLIP), -_Z_CLIP) for j in range(5)]
        )
        if iso < self.score_threshold:  # inside the crowd after all: no finding, no learning
            del state["h"]
            fleet.findings.pop(agent, None)
            return []
        finding = self._finding(
            agent=agent,
            fleet_name=baseline.fleet,
            feature=best,
            z=z_best,
            iso=iso,
            win=window_features(baseline, seconds=self.window_s, at=ts),
            usual=(ref[0], ref[1], cpe, p_fail, p_denied),
            fleet=fleet,
        )
        fleet.findings[agent] = finding
        return [finding]

    def _refresh(self, fleet: _Fleet, ts: float) -> None:
        """Recompute the fleet's median and robust spread from its recent vectors."""
        fleet.stats_t = ts
        own = fleet.vectors
        horizon = ts - self.refit_s
        stale = [agent for agent, (seen, _) in own.items() if seen < horizon]
        for agent in stale:  # idle agents: their last window no longer stands for the fleet
            del own[agent]
            fleet.recent.pop(agent, None)
        vectors = fleet.fleet_vectors(horizon)
        size = len(vectors)
        if size < self.min_agents:
            fleet.center = None
            fleet.peers = size
            return
        matrix = np.fromiter(chain.from_iterable(vectors), float, count=5 * size).reshape(size, 5)
        mid = ((size - 1) // 2, size // 2)
        ordered = np.sort(matrix, axis=0)
        center = (ordered[mid[0]] + ordered[mid[1]]) * 0.5  # the median of each column
        spread = np.sort(np.abs(matrix - center), axis=0)
        mad = (spread[mid[0]] + spread[mid[1]]) * (0.5 * _MAD_TO_SIGMA)
        fleet.center = center.tolist()
        fleet.scale = np.maximum(mad, _SCALE_FLOOR).tolist()
        fleet.peers = size

    def _new_epoch(self, fleet: _Fleet, epoch: int, ts: float) -> None:
        """Snapshot the fleet's robust-z vectors to train this epoch's forest on (lazily)."""
        fleet.epoch = epoch
        fleet.forest = None
        fleet.train = None
        center = fleet.center
        vectors = fleet.fleet_vectors(ts - self.refit_s)
        if center is None or len(vectors) < self.min_agents:
            return
        matrix = np.array(vectors)
        fleet.train = np.clip((matrix - center) / np.array(fleet.scale), -_Z_CLIP, _Z_CLIP)

    def _finding(
        self,
        *,
        agent: str,
        fleet_name: str,
        feature: int,
        z: float,
        iso: float,
        win: WindowFeatures,
        usual: tuple[float, float, float, float, float],
        fleet: _Fleet,
    ) -> Finding:
        """Explain the deviation that stood out, with the agent's recent events as evidence."""
        center = fleet.center[feature] if fleet.center else 0.0
        items = list(reversed(fleet.recent.get(agent, ())))
        actions: tuple[str, ...] = ()
        span = f"in the last {win.minutes:.1f} min"
        if feature <= 2:  # volume or spend: log ratios
            observed = (win.events_per_min, win.cost_per_min, win.cost_per_event)[feature]
            unit = ("{:.1f}/min", "${:.4f}/min", "${:.5f}")[feature]
            ratio = f"{observed / usual[feature]:.1f}x" if usual[feature] > 0 else "new"
            what = (
                f"{unit.format(observed)} over {win.events} events {span} vs "
                f"{unit.format(usual[feature])} usual ({ratio})"
            )
            moved = f"x{math.exp(center):.2f}"
            baseline = usual[feature]
            if feature:  # spend: the costliest events first
                items.sort(key=lambda item: -item[3])
        else:  # failures or denials: those events first, and their actions (to revoke)
            bad = ("error", "denied") if feature == 3 else ("denied",)
            items = [item for item in items if item[2] in bad]
            actions = tuple(dict.fromkeys(item[1] for item in items))
            if feature == 3:
                observed = win.failure_share
                baseline = usual[3]
                what = (
                    f"{observed:.0%} of {win.events} events failed {span} vs {baseline:.1%} "
                    f"usual ({(observed - baseline) * 100:+.0f} pts)"
                )
                moved = f"{center * 100:+.1f} pts"
            else:
                observed = float(win.denied)
                baseline = win.events * usual[4]
                what = (
                    f"{win.denied} of {win.events} events denied {span} vs {baseline:.1f} "
                    f"expected at its usual {usual[4]:.1%}"
                )
                moved = f"{center:+.1f} sd"
        summary = (
            f"{agent} stands out in fleet {fleet_name} on {_LABELS[feature]}: {what}, while "
            f"the fleet's median agent moved {moved}; robust z {z:+.1f} among {fleet.peers} "
            f"active agents, isolation score {iso:.2f}."
        )
        return Finding(
            kind=FEATURES[feature],
            score=round(z, 3),
            threshold=self.z_threshold,
            observed=observed,
            baseline=baseline,
            summary=summary,
            evidence=tuple(item[0] for item in items[:20]),
            actions=actions,
        )


def _learn(  # noqa: PLR0917 - a hot path: positional arguments are the cheapest
    state: dict[str, JSON],
    ref: list[float],
    weight: float,
    ts: float,
    minutes: float,
    events: int,
    cost: float,
    failed: int,
    denied: int,
) -> None:
    """Move the agent's reference (per-minute events, cost, failures, denials) toward a window."""
    ref[0] += weight * (events / minutes - ref[0])
    ref[1] += weight * (cost / minutes - ref[1])
    ref[2] += weight * (failed / minutes - ref[2])
    ref[3] += weight * (denied / minutes - ref[3])
    state["u"] = ts
