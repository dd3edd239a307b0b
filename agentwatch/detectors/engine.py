"""The engine: one agent event in, detectors run, baseline updated, anomalies out.

Plain Python with no faust in it. The live worker and the offline ``backtest`` both feed
events through :meth:`Engine.process` in event-time order, so they produce the same state and
the same anomalies.

Per event: every rule's detector sees the event with the agent's baseline as it was *before*
the event; then the baseline learns the event. A rule's findings become an :class:`Anomaly`
once they have persisted for the rule's ``for`` duration, and at most once per agent, rule
and finding kind per ``cooldown``: an agent in trouble produces a handful of anomalies, not
one per event.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from hashlib import blake2b
from typing import Any, cast

from agentwatch.detectors.base import AgentDetector, Finding
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.fleet_sync import FleetSync
from agentwatch.detectors.rules import Rule, RuleSet
from agentwatch.schemas import ActionEvent, Anomaly

__all__ = ["Engine"]

log = logging.getLogger(__name__)

#: Findings further apart than this restart a rule's ``for`` clock.
FOR_RESET_S = 60.0

AgentState = dict[str, dict[str, Any]]
#: One rule as the engine runs it for the agents of one fleet: rule, ``detector.update``, the
#: detector's state for the fleet, and where the agent's own state is in its plan's states.
_Step = tuple[Rule, Callable[..., list[Finding]], dict[str, Any], int]


class _FleetPlan:
    """The rules as the engine runs them for the agents of one fleet (in memory only).

    ``rules`` are the fleet's rules in file order, each with its detector, its bound
    ``update`` and its fleet state; ``by_kind`` holds, per event kind, the steps whose detector
    looks at events of that kind without a cost and with one (see
    :meth:`AgentDetector.skips`), each with its rule's index in ``rules``. Shared by the
    fleet's agents: an agent's own plan is its detector states in that order, so it adds two
    objects to what the garbage collector walks, not three per rule.
    """

    __slots__ = ("alerts", "by_kind", "rules")

    def __init__(
        self, rules: list[tuple[Rule, AgentDetector, Callable[..., list[Finding]], dict[str, Any]]]
    ) -> None:
        self.rules = rules
        self.alerts = [rule.alert for rule, _, _, _ in rules]
        self.by_kind: dict[str, tuple[list[_Step], list[_Step]]] = {}

    def for_kind(self, kind: str) -> tuple[list[_Step], list[_Step]]:
        free, costed = (
            [
                (rule, update, fleet_state, index)
                for index, (rule, detector, update, fleet_state) in enumerate(self.rules)
                if not detector.skips(kind, with_cost)
            ]
            for with_cost in (False, True)
        )
        self.by_kind[kind] = (free, costed)
        return free, costed


class _Plan:
    """One agent's plan (in memory only, rebuilt at will): its fleet's plan, and its detector
    states in the order of that plan's rules."""

    __slots__ = ("fleet", "shared", "state", "states")

    def __init__(
        self, state: AgentState, fleet: str, shared: _FleetPlan, states: list[dict[str, Any]]
    ) -> None:
        self.state = state
        self.fleet = fleet
        self.shared = shared
        self.states = states


class _Fields:
    """An event's fields as plain attributes: what the detectors and the baseline read.

    pydantic models define ``__getattr__``, which keeps CPython 3.11 from specialising
    attribute reads on them: each takes ~30 ns instead of ~8 ns, and the rules read an
    event's fields some 70 times. This view shares the event's ``__dict__`` (nothing is
    copied), so it costs one small allocation per event and reads the same values.
    """

    ts_epoch = ActionEvent.ts_epoch  # computed once, cached in the shared dict


_new_fields = object.__new__


def _new_state() -> AgentState:
    # d: detector state per rule; p: pending [first, last] finding ts per rule (``for``);
    # c: last anomaly ts per "rule:kind" (cooldown)
    return {"d": {}, "p": {}, "c": {}}


class Engine:
    """Per-agent baselines, detector state, rule evaluation and duplicate suppression.

    Parameters
    ----------
    rules
        The rules to evaluate; ``None`` keeps baselines only (no detection). Their detectors
        are built, and prepared (:meth:`AgentDetector.prepare`), here.
    dedup_window
        Duplicate ``event_id`` values are dropped if they are among the last ``dedup_window/2``
        to ``dedup_window`` ids seen (two generations of sets: O(1) per event).
    baseline_factory
        Builds an empty baseline for an agent seen for the first time.
    worker_id
        This engine's worker, among those sharing fleet summaries (:meth:`absorb`).
    fleet_ttl_s
        Another worker's fleet summaries are forgotten this long after they were published
        (:meth:`expire`).

    Examples
    --------
    >>> from agentwatch.schemas import decode_event
    >>> engine = Engine()
    >>> raw = b'{"event_id":"e1","ts":"2026-01-01T00:00:00Z","agent_id":"a1","action":"search"}'
    >>> engine.process(decode_event(raw))
    []
    >>> engine.process(decode_event(raw)) is None  # the same event_id again
    True
    >>> engine.baselines["a1"].count
    1
    """

    def __init__(
        self,
        rules: RuleSet | None = None,
        *,
        dedup_window: int = 100_000,
        baseline_factory: Callable[[str, str], AgentBaseline] = AgentBaseline,
        worker_id: str = "local",
        fleet_ttl_s: float = 60.0,
    ) -> None:
        self.rules = rules
        self.dedup_window = dedup_window
        self.baseline_factory = baseline_factory
        self.baselines: dict[str, AgentBaseline] = {}
        self.states: dict[str, AgentState] = {}
        self.fleet_states: dict[tuple[str, str], dict[str, Any]] = {}
        #: fleets with an agent whose events this engine folded (a restore leaves them be)
        self.folded_fleets: set[str] = set()
        self._compiled = [
            (rule, rule.build(), frozenset(rule.fleets) if rule.fleets else None)
            for rule in (rules or ())
        ]
        for _, detector, _ in self._compiled:
            detector.prepare()
        self._by_alert = {
            rule.alert: (detector, fleets) for rule, detector, fleets in self._compiled
        }
        self.sync = FleetSync(worker_id, fleet_ttl_s)
        self._plans: dict[str, _Plan] = {}
        self._fleet_plans: dict[str, _FleetPlan] = {}
        self._seen: set[str] = set()
        self._seen_before: set[str] = set()
        self._dedup_half = dedup_window // 2

    def _plan(self, agent_id: str, fleet: str, state: AgentState) -> _Plan:
        """The agent's plan: its fleet's (built once per fleet), and its detector states.

        Built on an agent's first event (and again if its state or fleet changes), so that
        the per-event loop does no dictionary lookups and no fleet filtering.
        """
        shared = self._fleet_plans.get(fleet)
        if shared is None:
            shared = self._fleet_plans[fleet] = self._fleet_plan(fleet)
        det_states = state["d"]
        states: list[dict[str, Any]] = []
        for alert in shared.alerts:
            det_state = det_states.get(alert)
            if det_state is None:
                det_state = det_states[alert] = {}
            states.append(det_state)
        plan = self._plans[agent_id] = _Plan(state, fleet, shared, states)
        self.folded_fleets.add(fleet)
        return plan

    def _fleet_plan(self, fleet: str) -> _FleetPlan:
        """The rules that apply to ``fleet``, each with its detector and its fleet state."""
        rules = []
        for rule, detector, fleets in self._compiled:
            if fleets is not None and fleet not in fleets:
                continue
            fleet_state = self.fleet_states.setdefault((rule.alert, fleet), {})
            rules.append((rule, detector, detector.update, fleet_state))
        return _FleetPlan(rules)

    def process(self, event: ActionEvent) -> list[Anomaly] | None:
        """Run the rules on one event and fold it in; ``None`` if it is a duplicate."""
        values = event.__dict__
        event_id = values["event_id"]
        seen = self._seen
        if event_id in seen or event_id in self._seen_before:
            return None
        seen.add(event_id)
        if len(seen) >= self._dedup_half:
            self._seen_before, self._seen = seen, set()
        fields = _new_fields(_Fields)
        fields.__dict__ = values
        event = cast(ActionEvent, fields)
        agent_id = values["agent_id"]
        fleet = values["fleet"]
        baseline = self.baselines.get(agent_id)
        if baseline is None:
            baseline = self.baselines[agent_id] = self.baseline_factory(agent_id, fleet)
        state = self.states.get(agent_id)
        if state is None:
            state = self.states[agent_id] = _new_state()
        plan = self._plans.get(agent_id)
        if plan is None or plan.state is not state or plan.fleet != fleet:
            plan = self._plan(agent_id, fleet, state)
        kind = values["kind"]
        shared = plan.shared
        by_cost = shared.by_kind.get(kind)
        if by_cost is None:
            by_cost = shared.for_kind(kind)
        steps = by_cost[values["cost_usd"] > 0.0]  # (without a cost, with one)
        states = plan.states
        anomalies: list[Anomaly] = []
        for rule, update, fleet_state, index in steps:
            findings = update(event, baseline, states[index], fleet_state)
            if findings:
                self._fire(rule, event, state, findings, anomalies)
        baseline.update(event)
        return anomalies

    def _fire(
        self,
        rule: Rule,
        event: ActionEvent,
        state: AgentState,
        findings: list[Finding],
        out: list[Anomaly],
    ) -> None:
        ts = event.ts_epoch
        alert = rule.alert
        pending = state["p"].get(alert)
        if pending is None or ts - pending[1] > max(rule.for_, FOR_RESET_S):
            pending = state["p"][alert] = [ts, ts]
        else:
            pending[1] = ts
        if ts - pending[0] < rule.for_:
            return
        cooldowns = state["c"]
        for finding in findings:
            key = f"{alert}:{finding.kind}"
            last = cooldowns.get(key)
            if last is not None and ts - last < rule.cooldown:
                continue
            cooldowns[key] = ts
            out.append(self._anomaly(rule, event, finding))

    @staticmethod
    def _anomaly(rule: Rule, event: ActionEvent, finding: Finding) -> Anomaly:
        digest = blake2b(
            f"{event.agent_id}|{rule.alert}|{finding.kind}|{event.event_id}".encode(),
            digest_size=10,
        ).hexdigest()
        evidence = list(dict.fromkeys(finding.evidence or (event.event_id,)))[:64]
        return Anomaly(
            anomaly_id=f"an-{digest}",
            ts=event.ts,
            agent_id=event.agent_id,
            fleet=event.fleet,
            detector=rule.detector,
            kind=finding.kind,
            severity=rule.severity or finding.severity or "warning",  # type: ignore[arg-type]
            score=_finite(finding.score),
            threshold=_finite(finding.threshold),
            observed=_finite(finding.observed),
            baseline=_finite(finding.baseline),
            summary=finding.summary[:1024],
            evidence=evidence,
            rule=rule.alert,
            actions=list(dict.fromkeys(finding.actions))[:64],
        )

    # -- fleet state across workers -------------------------------------------------------
    def fleet_partials(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """This worker's part of every fleet's state (or of fleet ``only``):
        ``{fleet: {alert: [detector name, partial]}}``.

        Only detectors that share their fleet state (:meth:`AgentDetector.fleet_partial`)
        appear; every value is JSON-able. The detector's name goes along, so a worker whose
        rule of that name runs another detector (a rules file changed between two workers'
        deployments) leaves the partial alone.
        """
        out: dict[str, dict[str, Any]] = {}
        for (alert, fleet), fleet_state in self.fleet_states.items():
            entry = self._by_alert.get(alert)
            if entry is None or not fleet_state or (only is not None and fleet != only):
                continue
            partial = entry[0].fleet_partial(fleet_state)
            if partial is not None:
                out.setdefault(fleet, {})[alert] = [entry[0].name, partial]
        return out

    def absorb(self, worker_id: str, fleet: str, partials: dict[str, Any], now: float) -> None:
        """Take ``worker_id``'s newest partials of ``fleet`` (published at ``now``, in the
        clock :meth:`expire` is given) and merge the other workers' view of the fleet again.
        This worker's own id is ignored (see :meth:`restore`)."""
        if self.sync.put(worker_id, fleet, partials, now):
            self._merge(fleet)

    def absorb_many(self, items: Iterable[tuple[str, str, dict[str, Any], float]]) -> None:
        """:meth:`absorb` of several ``(worker_id, fleet, partials, published_at)``, merging
        each fleet once (a batch read from the fleets topic, or one exchange of a replay)."""
        changed: set[str] = set()
        for worker_id, fleet, partials, now in items:
            if self.sync.put(worker_id, fleet, partials, now):
                changed.add(fleet)
        for fleet in sorted(changed):
            self._merge(fleet)

    def forget(self, worker_id: str, fleet: str) -> None:
        """Drop ``worker_id``'s partials of ``fleet`` (it said it left)."""
        if self.sync.drop(worker_id, fleet):
            self._merge(fleet)

    def expire(self, now: float) -> None:
        """Forget the partials published more than the TTL before ``now``."""
        for fleet in self.sync.expire(now):
            self._merge(fleet)

    def restore(self, fleet: str, partials: dict[str, Any]) -> bool:
        """Start this worker's own part of ``fleet``'s state from ``partials``, what it
        published before it restarted, so that its fleets do not start cold.

        A fleet whose events this engine already folded keeps its own part: the restore runs
        beside ingest, and replacing that part would drop those events (a colder start,
        nothing lost). Returns whether the part was restored.
        """
        if fleet in self.folded_fleets:
            log.info("fleet %s: events came before the restore; its own part is kept", fleet)
            return False
        for alert, tagged in partials.items():
            fleet_state = self._fleet_state(alert, fleet)
            detector = self._by_alert[alert][0] if fleet_state is not None else None
            if fleet_state is None or detector is None or not _tagged(tagged, detector.name):
                continue
            try:
                detector.fleet_restore(fleet_state, tagged[1])
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                fleet_state.clear()  # nothing half-loaded
                log.warning(
                    "fleet %s, rule %s: this worker's summary from before the restart does not "
                    "load (%r); its own part starts cold",
                    fleet,
                    alert,
                    exc,
                )
        self._merge(fleet)
        return True

    def _fleet_state(self, alert: str, fleet: str) -> dict[str, Any] | None:
        entry = self._by_alert.get(alert)
        if entry is None or (entry[1] is not None and fleet not in entry[1]):
            return None
        return self.fleet_states.setdefault((alert, fleet), {})

    def _merge(self, fleet: str) -> None:
        others = self.sync.others(fleet)
        alerts = {alert for partials in others for alert in partials}
        alerts.update(alert for alert, name in self.fleet_states if name == fleet)
        for alert in sorted(alerts):
            fleet_state = self._fleet_state(alert, fleet)
            if fleet_state is None:
                continue
            detector = self._by_alert[alert][0]
            name = detector.name
            parts = [p[alert][1] for p in others if alert in p and _tagged(p[alert], name)]
            try:
                detector.fleet_absorb(fleet_state, parts)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                # a partial of another version: judged on this worker's agents alone
                # until the other workers publish ones that load
                log.warning(
                    "fleet %s, rule %s: another worker's summary does not merge (%r); "
                    "this worker's own part only",
                    fleet,
                    alert,
                    exc,
                )
                detector.fleet_absorb(fleet_state, [])

    def evict(self, agent_ids: set[str]) -> None:
        """Forget the in-memory state of agents this process no longer owns."""
        for agent_id in agent_ids:
            self.baselines.pop(agent_id, None)
            self.states.pop(agent_id, None)
            self._plans.pop(agent_id, None)


def _tagged(tagged: Any, name: str) -> bool:
    """Whether ``tagged`` is ``[name, partial]``: a partial of detector ``name``."""
    return isinstance(tagged, list) and len(tagged) == 2 and tagged[0] == name


def _finite(value: float) -> float:
    """A finding's number as the wire allows it: overflow to the largest float, NaN to 0.

    An extreme but valid event (a cost near the float limit) can push a detector's arithmetic
    to infinity; the anomaly must still be published, not dead-lettered as a processing error.
    """
    number = float(value)
    if math.isnan(number):
        return 0.0
    return max(-_FLOAT_MAX, min(_FLOAT_MAX, number))


_FLOAT_MAX = 1.7976931348623157e308
