"""``failure_rate``: error storms and bursts of denials, by binomial tail tests."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

from agentwatch.detectors.base import Finding, OneObjectFleet, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.calibration import BudgetThreshold, compact_state
from agentwatch.detectors.fleet_agents import FleetAgents
from agentwatch.detectors.fleet_tail import FleetTail
from agentwatch.detectors.rate_test import RateTest, binomial_tail_log10
from agentwatch.schemas import ActionEvent

__all__ = ["FailureRate"]

_RING = 16  # recent failures kept per agent [ts, action, kind, event id, call number]
_REPORTED = 2  # the kind of a failure an error_storm finding reported (1: denied, 0: error)
_PRIOR_CHECKS = 10.0  # checks of the fleet's typical agent an agent's check rate starts from
_KEEP = 0.5 ** (1.0 / 5_000.0)  # a BudgetThreshold's decay per check (its default half-life)


class _Fleet:
    """Per-fleet memory of recent failures: per agent (outages) and per action (shared).

    This worker's own agents' part (``agents``, ``failing``, ``by_action``, ``pooled``'s own
    part) and the other workers' (``remote_*``, :meth:`absorb`): agents are disjoint across
    workers, so the fleet is their union and the counts their sums.
    """

    __slots__ = (
        "agents",
        "by_action",
        "checks",
        "failing",
        "pooled",
        "remote_by_action",
        "remote_failing",
        "view",
    )

    def __init__(self) -> None:
        self.agents = FleetAgents()  # agents of the fleet seen by this detector
        self.checks: dict[str, BudgetThreshold] = {}  # agent -> its storm checks (a cache)
        self.pooled = FleetTail(_KEEP)  # every agent's storm checks (their rate)
        self.failing: dict[str, list[float]] = {}  # agent -> its last few failure times
        self.by_action: dict[str, dict[str, list[float]]] = {}  # action -> agent -> 3 times
        self.remote_failing: dict[str, list[float]] = {}
        self.remote_by_action: dict[str, dict[str, list[float]]] = {}
        self.view: BudgetThreshold | None = None  # the pooled checks (a cache)

    def fleet_agents(self) -> int:
        return len(self.agents)

    def pooled_checks(self) -> BudgetThreshold | None:
        """Every agent's storm checks as one threshold (for their rate); None before any."""
        view = self.view
        if view is None and self.pooled.seen():
            view = self.view = BudgetThreshold().load_state(self.pooled.view())
        return view

    def learn_check(self, score: float, ts: float) -> None:
        self.pooled.learn(score, ts)
        self.view = None

    def record(self, agent: str, action: str, ts: float) -> None:
        times = self.failing.get(agent)
        if times is None:
            times = self.failing[agent] = []
        times.append(ts)
        if len(times) > 4:
            del times[0]
        agents = self.by_action.get(action)
        if agents is None:
            agents = self.by_action[action] = {}
        last = agents.get(agent)
        if last is None:
            agents[agent] = [-math.inf, -math.inf, ts]
        else:
            last[0], last[1], last[2] = last[1], last[2], ts
        if len(agents) > 256:  # keep the recent half
            for key in sorted(agents, key=lambda k: agents[k][2])[:128]:
                del agents[key]

    def peers_failing(self, agent: str, ts: float, horizon: float) -> int:
        """Other agents with at least three failures within ``horizon`` seconds."""
        since = ts - horizon
        count = 0
        stale = []
        for key, times in self.failing.items():
            if times[-1] < since:
                stale.append(key)
            elif key != agent and len(times) >= 3 and times[-3] >= since:
                count += 1
        for key in stale:
            del self.failing[key]
        for key, times in self.remote_failing.items():
            if times[-1] >= since and key != agent and len(times) >= 3 and times[-3] >= since:
                count += 1
        return count

    def shared(self, action: str, agent: str, ts: float, horizon: float) -> bool:
        """Whether ``action`` is failing for peers: within ``horizon`` seconds, another
        agent failed it three times (in a busy fleet, two agents failing an action twice in
        two minutes is ordinary noise)."""
        since = ts - horizon
        for part in (self.by_action, self.remote_by_action):
            agents = part.get(action)
            if agents and any(
                key != agent and third >= since and _focused(part, key, action, since, 3)
                for key, (third, _, _) in agents.items()
            ):
                return True
        return False

    def lone(self, action: str, agent: str, ts: float, horizon: float, peers: int = 0) -> bool:
        """Whether at most ``peers`` other agents failed ``action`` within ``horizon``
        seconds, once each (a broken tool fails again, and for everyone who calls it)."""
        since = ts - horizon
        seen = 0
        for part in (self.by_action, self.remote_by_action):
            agents = part.get(action)
            if not agents:
                continue
            for key, (_, second, last) in agents.items():
                if key == agent or last < since:
                    continue
                if not _focused(part, key, action, since, 2 if second >= since else 1):
                    continue  # failing across its work: its own storm, not this tool's
                if second >= since:
                    return False
                seen += 1
                if seen > peers:
                    return False
        return True

    # -- across workers ---------------------------------------------------------------------
    def partial(self) -> dict[str, Any]:
        """This worker's agents' part, JSON-able (``-inf`` times as ``None``)."""
        return {
            "n": self.agents.partial(),
            "t": self.pooled.partial(),
            "f": self.failing,
            "a": {
                action: {k: [_out(x) for x in v] for k, v in agents.items()}
                for action, agents in self.by_action.items()
            },
        }

    def absorb(self, partials: list[dict[str, Any]]) -> None:
        """The other workers' parts (their agents are not ours: a union)."""
        self.agents.absorb([p["n"] for p in partials])
        self.pooled.absorb([p["t"] for p in partials])
        self.view = None
        failing: dict[str, list[float]] = {}
        by_action: dict[str, dict[str, list[float]]] = {}
        for p in partials:
            failing.update(p["f"])
            for action, agents in p["a"].items():
                into = by_action.setdefault(action, {})
                for key, times in agents.items():
                    into[key] = [_in(x) for x in times]
        self.remote_failing = failing
        self.remote_by_action = by_action

    def restore(self, partial: dict[str, Any]) -> None:
        """This worker's own part from before a restart."""
        self.agents.restore(partial["n"])
        self.pooled.restore(partial["t"])
        self.view = None
        self.failing = {k: list(v) for k, v in partial["f"].items()}
        self.by_action = {
            action: {k: [_in(x) for x in v] for k, v in agents.items()}
            for action, agents in partial["a"].items()
        }


def _focused(
    part: dict[str, dict[str, list[float]]], key: str, action: str, since: float, own: int
) -> bool:
    """Whether peer ``key``'s failures since ``since`` centre on ``action`` (``own`` of
    them): fewer on its other actions. A peer failing across its work is in a storm of its
    own, and witnesses no outage of this tool (two agents storming at once used to hide
    each other's storms, every tool looking "shared")."""
    others = 0
    for name, agents in part.items():
        if name != action:
            times = agents.get(key)
            if times is not None:
                others += (times[0] >= since) + (times[1] >= since) + (times[2] >= since)
                if others >= own:
                    return False
    return True


def _failed_calls(items: list[list[Any]]) -> tuple[dict[str, int], dict[str, int]]:
    """Per action, the failed calls (a call retried at once fails once, however many tries)
    and the tries (every retry)."""
    per_action: dict[str, int] = {}
    tries: dict[str, int] = {}
    previous: list[Any] | None = None
    for item in items:
        name = item[1]
        if not (
            previous is not None
            and previous[1] == name
            and len(item) > 4
            and item[4] == previous[4] + 1
        ):
            per_action[name] = per_action.get(name, 0) + 1
        tries[name] = tries.get(name, 0) + 1
        previous = item
    return per_action, tries


def _left(
    per_action: dict[str, int], tries: dict[str, int], own: dict[str, int], trials: int
) -> tuple[int, int, int]:
    """The failures and the calls left once the actions not the agent's ``own`` and its most
    failing own one (of a tie, the one tried least) are out, and that one's failures:
    ``(0, trials, top)`` if none are left.

    Both in the same units: every call of the actions left out, and the retries of the
    others, are out of the calls.
    """
    top = max(own.values(), default=0)
    rest = sum(own.values()) - top
    if rest <= 0:
        return 0, trials, top
    dropped = ""
    for name, n in own.items():
        if n == top and (not dropped or tries[name] < tries[dropped]):
            dropped = name
    calls = trials - tries[dropped]
    for name, n in per_action.items():
        if name not in own:
            calls -= tries[name]
        elif name != dropped:
            calls -= tries[name] - n
    return rest, calls, top


def _out(x: float) -> float | None:
    return None if x == -math.inf else x


def _in(x: float | None) -> float:
    return -math.inf if x is None else x


@register_detector
class FailureRate(OneObjectFleet):
    """Too many failures for this agent: an error storm or a burst of denials.

    Evidence is counted in the agent's calls (LLM calls aside: ``ignore_kinds``), not in
    minutes, so a sparse agent with three failures in its last four calls and a busy one
    with three in its last four are judged alike. The failure probability a count is
    tested against is the agent's own exponentially weighted failure share (a
    :class:`~agentwatch.detectors.rate_test.RateTest` state: half-life ``half_life``
    calls, prior ``prior_rate`` worth ``prior_weight`` calls), learned only from failures
    that were unremarkable, so a storm does not raise the baseline it is judged against.

    Two kinds of finding:

    * ``error_storm``: on each failed call, for each of the agent's last ``j >=
      min_storm`` errors within its last ``storm_events`` calls, ``j`` errors among the
      ``n`` calls since the ``j``-th last one are tested against the failure share with a
      binomial upper tail (:func:`~agentwatch.detectors.rate_test.binomial_tail_log10`);
      the score is the best ``-log10`` p-value less ``log10`` of the ``j`` tried
      (Bonferroni). The threshold comes from a false-alarm budget: a check happens on each
      failed call, and a p-value of ``false_alarms_per_agent_day`` over the agent's
      checks a day (its rate measured by a
      :class:`~agentwatch.detectors.calibration.BudgetThreshold`) fires, so an agent that
      fails often needs stronger evidence than one that rarely does. Denials do not count
      (a burst of them is a ``denial_burst``). The failures must also be spread across
      the agent's work: still ``min_spread`` failures scoring ``spread_threshold`` once
      the actions that peers fail on too (another agent with three failures of it within
      ``peer_window_s``, and fewer of its other actions: a peer failing across its work is
      in a storm of its own) and then the most failing remaining action are left out; or
      still ``lone_spread`` (one) once those are left out while no other agent of the
      fleet has failed the most failing action within ``peer_window_s`` twice, and at
      most ``lone_peers`` (one) once. A failed call retried at once counts once there, as
      a failure and as a call (the calls left are those of the actions left, retries
      aside). A tool outage (``error_burst``) fails one action, usually for several
      agents at once, and is not the agent's fault. Nor is a
      fleet-wide outage: when at least ``min_peers`` other agents of the fleet, and at
      least ``fleet_share`` of it, have three or more failures within ``peer_window_s``,
      nobody's storm is reported (page the platform team, not each agent's owner).
    * ``denial_burst``: at least ``min_denials`` denials in the last ``window_s`` with a
      score of at least ``denial_threshold`` against the agent's own denial share (prior
      ``denial_prior``). Denials are rare in normal traffic (expired approvals), so a few
      in a minute mean the agent is trying things it is not allowed to do
      (``privilege_probing``).

    Parameters
    ----------
    false_alarms_per_agent_day
        The budget of the ``error_storm`` test: expected false alarms per agent-day
        (default 0.02).
    storm_events
        Longest run of calls the storm test looks back over (default 40).
    min_storm
        Fewest errors the storm test considers (default 3).
    spread_threshold
        Minimum score without the shared and the most failing action (default 1.5).
    min_spread
        Minimum failures without the shared and the most failing action (default 2).
    window_s
        Window of the ``denial_burst`` test, seconds of event time (default 60; the call
        count comes from the baseline's buckets, so up to one bucket more is covered).
    denial_threshold
        Minimum score of the ``denial_burst`` test (default 4.0).
    min_denials
        Minimum denials in the window for ``denial_burst`` (default 2).
    half_life
        Half-life of the learned failure and denial shares, in calls (default 1000).
    prior_rate
        Prior failure probability (default 0.02).
    denial_prior
        Prior denial probability (default 0.002).
    prior_weight
        Weight of both priors, in calls (default 200).
    min_peers
        Failing peers that make a failure wave fleet-wide, at least (default 3).
    fleet_share
        Share of the fleet's agents that must be failing for that, at least (default 0.1).
    peer_window_s
        How recent the peers' failures must be, seconds (default 120).
    lone_spread
        Minimum failures without the shared and the most failing action when no peer failed
        that action within ``peer_window_s`` (default 1; ``min_spread`` or more turns this
        off).
    lone_peers
        Peers that may each have failed that action once within ``peer_window_s`` for it
        to count as failing for this agent alone (default 1: an ordinary failure of a peer
        in a busy fleet is not an outage; 0: no peer failure at all).
    lone_threshold
        The score (``-log10 p``) the failures left must reach in that case (default 1:
        p <= 0.1 among the calls left).
    ignore_kinds
        Event kinds left out of everything (default ``["llm"]``: a model's own errors are
        not the agent's tools failing).
    skip_retries
        Leave a failed call's immediate retries out of the evidence (default False).

    Notes
    -----
    Catches ``error_storm`` (most calls failing across tools) after a handful of failed
    calls (three of an agent's last four calls, on two tools, for one that rarely fails)
    and ``privilege_probing`` after two or three denials; stays quiet on a tool outage
    that hits a few agents (``error_burst``: one action, usually failed by a peer too) and
    on the occasional failure.
    Limits: a storm confined to a single action of a single agent (its own credentials
    expired for one tool) is not an ``error_storm`` here; nor is a storm while a tenth of
    the fleet is failing too. Agents that call little need a storm to last a few calls:
    the evidence is in calls, and an idle agent makes none. Two outages of different tools
    hitting one agent at the same moment look like a storm until the peers' failures show,
    and so does an outage that reaches the agent before any peer calls the broken tool, if
    an ordinary failure of another tool coincides.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> det, b, state, fleet = FailureRate(), AgentBaseline("a1", "ops"), {}, {}
    >>> found = []
    >>> for i in range(3000):
    ...     storm = i >= 2990 and i % 3
    ...     e = ActionEvent(event_id=f"e{i}", agent_id="a1", fleet="ops",
    ...                     ts=t0 + timedelta(seconds=30 * i),
    ...                     action=("read_logs", "http_get", "query")[i % 3],
    ...                     status="error" if (storm or i % 97 == 0) else "ok")
    ...     found += det.update(e, b, state, fleet)
    ...     b.update(e)
    >>> print(textwrap.fill(found[0].summary, 90))
    a1 failed 3 of its last 4 calls (75%) vs a usual 1.3% (p = 4.9e-04; the budget fires at
    6.3e-04) on 2 actions: query 2, http_get 1
    >>> found[0].kind, found[0].evidence[0], found[0].actions
    ('error_storm', 'e2993', ('query', 'http_get'))
    """

    name: ClassVar[str] = "failure_rate"
    fleet_key = "failure_rate"  # its fleet object in the fleet state

    def __init__(
        self,
        *,
        false_alarms_per_agent_day: float = 0.02,
        storm_events: int = 40,
        min_storm: int = 3,
        spread_threshold: float = 1.5,
        min_spread: int = 2,
        window_s: float = 60.0,
        denial_threshold: float = 4.0,
        min_denials: int = 2,
        half_life: float = 1000.0,
        prior_rate: float = 0.02,
        denial_prior: float = 0.002,
        prior_weight: float = 200.0,
        min_peers: int = 3,
        fleet_share: float = 0.1,
        peer_window_s: float = 120.0,
        lone_spread: int = 1,
        lone_peers: int = 1,
        lone_threshold: float = 1.0,
        ignore_kinds: Sequence[str] = ("llm",),
        skip_retries: bool = False,
    ) -> None:
        if false_alarms_per_agent_day <= 0.0 or storm_events < 2 or min_storm < 2:
            raise ValueError(
                "need false_alarms_per_agent_day > 0, storm_events >= 2 and min_storm >= 2"
            )
        self.false_alarms_per_agent_day = false_alarms_per_agent_day
        self.storm_events = storm_events
        self.min_storm = min_storm
        self.spread_threshold = spread_threshold
        self.min_spread = min_spread
        self.window_s = window_s
        self.denial_threshold = denial_threshold
        self.min_denials = min_denials
        self.half_life = half_life
        self.prior_rate = prior_rate
        self.denial_prior = denial_prior
        self.prior_weight = prior_weight
        self.min_peers = min_peers
        self.fleet_share = fleet_share
        self.peer_window_s = peer_window_s
        self.lone_spread = lone_spread
        self.lone_peers = lone_peers
        self.lone_threshold = lone_threshold
        self.ignore_kinds = list(ignore_kinds)
        self.skip_retries = skip_retries
        self._fails = RateTest(
            trials="n",
            half_life=half_life,
            min_count=1,
            prior_rate=prior_rate,
            prior_weight=prior_weight,
        )
        self._denials = RateTest(
            trials="n",
            half_life=half_life,
            min_count=min_denials,
            prior_rate=denial_prior,
            prior_weight=prior_weight,
        )

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, Any],
        fleet_state: dict[str, Any],
    ) -> list[Finding]:
        """Count a success; test a failure (see the class doc)."""
        if event.kind in self.ignore_kinds:
            return []
        status = event.status
        ok = state.get("ok")
        if ok is None:
            state.update(f=self._fails.new_state(), d=self._denials.new_state(), r=[], ok=0)
            fleet = fleet_state.get("failure_rate")
            if fleet is None:
                fleet = fleet_state["failure_rate"] = _Fleet()
            fleet.agents.add(event.agent_id)
            ok = 0
        ring = state["r"]  # the last failed calls: [ts, action, kind, event id, number]
        if (
            self.skip_retries
            and ok == 0
            and ring
            and len(ring[-1]) > 4
            and ring[-1][4] == state.get("i", 0)
            and event.action == ring[-1][1]
        ):
            return []  # a retry of the failed call just before: not a new trial
        if status == "ok":
            state["ok"] = ok + 1  # successes are settled into the shares at the next failure
            return []
        self._fails.learn_zeros(state["f"], ok)
        self._denials.learn_zeros(state["d"], ok)
        state["ok"] = 0
        index = state.get("i", 0) + ok + 1  # this call's number among the agent's calls
        state["i"] = index

        ts = event.ts_epoch
        agent = event.agent_id
        fleet = fleet_state.get("failure_rate")
        if fleet is None:  # the agent moved fleets, or its worker restarted without a
            # fleet summary to restore (its first start, or its summary expired)
            fleet = fleet_state["failure_rate"] = _Fleet()
            fleet.agents.add(event.agent_id)
        fleet.record(agent, event.action, ts)
        denied = status == "denied"
        ring.append([round(ts, 3), event.action, 1 if denied else 0, event.event_id, index])
        oldest = index - self.storm_events
        horizon = ts - 2.0 * self.window_s  # the denial window covers at most a bucket more
        while ring and (
            len(ring) > _RING or (ring[0][0] < horizon and len(ring[0]) > 4 and ring[0][4] < oldest)
        ):
            del ring[0]

        findings: list[Finding] = []
        if denied:
            window = baseline.window(self.window_s, at=ts)
            start = min(window.start, ts - self.window_s)
            denials = [item for item in ring if item[0] >= start and item[2] == 1]
            if len(denials) >= self.min_denials:
                trials = max(window.count + 1, len(denials))
                usual = self._denials.expected(state["d"])
                score = self._denials.score_value(state["d"], len(denials), trials)
                if score >= self.denial_threshold:
                    findings.append(
                        self._finding(
                            "denial_burst", event, items=denials, trials=trials, score=score,
                            threshold=self.denial_threshold, usual=usual, seconds=ts - start,
                        )
                    )  # fmt: skip
        usual = self._fails.expected(state["f"])
        checks = self._checks(agent, state, fleet, ts)
        threshold = math.log10(
            self._checks_per_day(checks, fleet) / self.false_alarms_per_agent_day
        )
        score = 0.0
        if not denied:
            storm = self._storm(ring, index, usual)
            if storm is not None:
                items, calls, score = storm
                if (
                    score >= threshold
                    and self._spread(items, calls, usual, fleet=fleet, agent=agent, ts=ts)
                    and not self._fleet_wide(fleet, event, ts)
                ):
                    findings.append(
                        self._finding(
                            "error_storm", event, items=items, trials=calls, score=score,
                            threshold=threshold, usual=usual, seconds=None,
                        )
                    )  # fmt: skip
                    for item in items:  # reported: a storm that goes on must show again
                        item[2] = _REPORTED
                    state["s"] = index
            if not findings:  # a check that fired teaches nothing, its rate included
                checks.learn_one(score, ts)
                state["b"] = compact_state(checks)
                fleet.learn_check(score, ts)
        quiet = index - state.get("s", -self.storm_events) > self.storm_events
        if not findings and score < 0.5 * threshold and quiet:  # not during a storm
            self._fails.learn_value(state["f"], 1.0, 1.0)
            self._denials.learn_value(state["d"], 1.0 if denied else 0.0, 1.0)
        return findings

    def new_fleet(self) -> _Fleet:
        return _Fleet()

    def _checks(
        self, agent: str, state: dict[str, Any], fleet: _Fleet, ts: float
    ) -> BudgetThreshold:
        """The agent's storm checks (its failed calls), counted to measure their rate."""
        checks = fleet.checks.get(agent)
        if checks is None:
            checks = BudgetThreshold(self.false_alarms_per_agent_day)
            saved = state.get("b")
            if saved is not None:
                checks.load_state(saved)
            fleet.checks[agent] = checks
        return checks

    @staticmethod
    def _checks_per_day(checks: BudgetThreshold, fleet: _Fleet) -> float:
        """The agent's checks a day, shrunk toward its fleet's per agent while it has had
        few (a young agent is judged by its fleet's habits, not by its first storm)."""
        own = checks.checks_per_day() if checks.seen else 0.0
        pooled = fleet.pooled_checks()
        if pooled is None or not pooled.seen:
            return own if checks.seen else checks.checks_per_day()
        typical = pooled.checks_per_day() / max(fleet.fleet_agents(), 1)
        seen = checks.seen
        return max((seen * own + _PRIOR_CHECKS * typical) / (seen + _PRIOR_CHECKS), 1.0)

    def _storm(
        self, ring: list[list[Any]], index: int, usual: float
    ) -> tuple[list[list[Any]], int, float] | None:
        """The most significant run of recent errors: for each of the last ``j`` errors
        (``j >= min_storm``) within the agent's last ``storm_events`` calls, ``j`` errors
        out of the ``n`` calls since the ``j``-th last one; the score is the best
        ``-log10`` p-value less ``log10`` of the number of runs tried (Bonferroni).
        Denials are left out: a burst of them is a ``denial_burst``."""
        errors = [item for item in ring if not item[2]]  # not denied, not reported yet
        best: tuple[int, int, float] | None = None
        tried = 0
        for j in range(self.min_storm, len(errors) + 1):
            first = errors[-j]
            if len(first) < 5:  # a failure recorded before call numbers were kept
                break
            calls = index - first[4] + 1
            if calls > self.storm_events:
                break
            tried += 1
            # the call that failed just now is what triggered the check, not evidence: the
            # p-value is of the j - 1 errors among the calls before it
            value = -binomial_tail_log10(j - 1, calls - 1, usual)
            if best is None or value > best[2]:
                best = (j, calls, value)
        if best is None:
            return None
        j, calls, value = best
        return errors[-j:], calls, value - math.log10(tried)

    def _spread(
        self,
        items: list[list[Any]],
        trials: int,
        usual: float,
        *,
        fleet: _Fleet,
        agent: str,
        ts: float,
    ) -> bool:
        """Whether the failures are across the agent's work, not one broken tool.

        Leave out the actions its peers are failing on too (a shared cause), then the most
        failing remaining one: at least ``min_spread`` failures must be left, and they must
        still score ``spread_threshold`` among the calls left; or at least ``lone_spread``
        must be left while no other agent of the fleet failed the most failing action (any
        of them, on a tie) within ``peer_window_s``.
        """
        horizon = self.peer_window_s
        per_action, tries = _failed_calls(items)
        own = {
            name: n for name, n in per_action.items() if not fleet.shared(name, agent, ts, horizon)
        }
        rest, calls, top = _left(per_action, tries, own, trials)
        if rest <= 0:
            return False
        spread = -binomial_tail_log10(rest, max(calls, rest), usual)
        if rest >= self.min_spread and spread >= self.spread_threshold:
            return True
        # a tool outage fails that tool for several agents: if nobody else failed the most
        # failing action lately, fewer failures elsewhere are enough, if they stand out
        return (
            rest >= max(self.lone_spread, 1)
            and spread >= self.lone_threshold
            and all(
                fleet.lone(name, agent, ts, horizon, self.lone_peers)
                for name, n in own.items()
                if n == top
            )
        )

    def _fleet_wide(self, fleet: _Fleet, event: ActionEvent, ts: float) -> bool:
        peers = fleet.peers_failing(event.agent_id, ts, self.peer_window_s)
        return peers >= max(self.min_peers, self.fleet_share * fleet.fleet_agents())

    def _finding(
        self,
        kind: str,
        event: ActionEvent,
        *,
        items: list[list[Any]],
        trials: int,
        score: float,
        threshold: float,
        usual: float,
        seconds: float | None,
    ) -> Finding:
        count = len(items)
        per_action: dict[str, int] = {}
        for item in items:
            per_action[item[1]] = per_action.get(item[1], 0) + 1
        ranked = sorted(per_action.items(), key=lambda kv: -kv[1])
        actions = ", ".join(f"{name} {n}" for name, n in ranked[:4])
        if seconds is None:  # an error storm: counted in calls, judged against the budget
            what = f"failed {count} of its last {trials} calls"
            p = f"p = {10.0**-score:.1e}; the budget fires at {10.0**-threshold:.1e}"
        else:
            what = f"was denied {count} of {trials} calls in the last {seconds:.0f} s"
            p = f"p = {10.0**-score:.1e}"
        summary = (
            f"{event.agent_id} {what} ({count / trials:.0%}) vs a usual {usual:.1%} ({p}) on "
            f"{len(ranked)} action{'s' if len(ranked) > 1 else ''}: {actions}"
        )
        return Finding(
            kind=kind,
            score=score,
            threshold=threshold,
            observed=count / trials,
            baseline=usual,
            summary=summary,
            evidence=tuple(item[3] for item in reversed(items[-20:])),
            actions=tuple(name for name, _ in ranked),
        )
