"""``failure_rate``: error storms and bursts of denials, by binomial tail tests."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from agentwatch.detectors.base import AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.rate_test import RateTest, binomial_tail_log10
from agentwatch.schemas import ActionEvent

__all__ = ["FailureRate"]

_RING = 16  # recent failures kept per agent (ts, action, denied?, event id)


class _Fleet:
    """Per-fleet memory of recent failures: per agent (outages) and per action (shared)."""

    __slots__ = ("agents", "by_action", "failing")

    def __init__(self) -> None:
        self.agents = 0  # agents of the fleet seen by this detector
        self.failing: dict[str, list[float]] = {}  # agent -> its last few failure times
        self.by_action: dict[str, dict[str, list[float]]] = {}  # action -> agent -> 3 times

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
        return count

    def shared(self, action: str, agent: str, ts: float, horizon: float) -> bool:
        """Whether ``action`` is failing for peers: within ``horizon`` seconds, another
        agent failed it three times, or two other agents twice each."""
        agents = self.by_action.get(action)
        if not agents:
            return False
        since = ts - horizon
        twice = 0
        for key, (third, second, _) in agents.items():
            if key != agent and second >= since:
                if third >= since:
                    return True
                twice += 1
        return twice >= 2

    def lone(self, action: str, agent: str, ts: float, horizon: float, peers: int = 0) -> bool:
        """Whether at most ``peers`` other agents failed ``action`` within ``horizon``
        seconds, once each (a broken tool fails again, and for everyone who calls it)."""
        agents = self.by_action.get(action)
        if not agents:
            return True
        since = ts - horizon
        seen = 0
        for key, (_, second, last) in agents.items():
            if key != agent and last >= since:
                if second >= since:
                    return False
                seen += 1
                if seen > peers:
                    return False
        return True


@register_detector
class FailureRate(AgentDetector):
    """Too many failures for this agent: an error storm or a burst of denials.

    On every failed event (``status`` ``error`` or ``denied``) the agent's failures in the
    last ``window_s`` seconds of event time are tested against its own failure probability
    with a binomial upper-tail test (``k`` failures out of ``n`` events,
    :func:`~agentwatch.detectors.rate_test.binomial_tail_log10`), so the evidence needed
    adapts to how busy and how error-prone the agent normally is. The probability is the
    agent's exponentially weighted failure share (a
    :class:`~agentwatch.detectors.rate_test.RateTest` state: half-life ``half_life``
    events, prior ``prior_rate`` worth ``prior_weight`` events). Failures are learned only
    while the window is unremarkable (score below half the threshold), so a storm does not
    raise the baseline it is judged against.

    Two kinds of finding:

    * ``error_storm``: too many failures, by either of two tests, *and* still
      ``min_spread`` failures scoring ``spread_threshold`` once the actions that peers fail
      on too (one other agent with three failures of it within ``peer_window_s``, or two
      with two each) and then the most failing remaining action are left out (their
      failures and calls): the agent is failing across its work, not on one broken tool.
      Or, sooner, still ``lone_spread`` failures (one) once those are left out while no
      other agent of the fleet has failed the most failing action within
      ``peer_window_s`` twice, and at most ``lone_peers`` (one) have failed it once: a
      broken tool fails again, and for the other agents that use it too, so one failure
      elsewhere is enough when nobody shares the first one.
      The tests: at least ``min_failures`` failures in the time window with a score
      (``-log10`` p-value) of at least ``threshold``; or a *streak*, ``j >= min_streak``
      errors among the agent's last ``n <= streak_events`` events (counted in events, not
      seconds, so a slow agent's window is not padded with time it was idle), scored
      against the same failure probability with the best ``j`` and a Bonferroni
      correction for the ``j`` tried, at least ``streak_threshold``. The streak test
      needs fewer failures when the agent rarely fails (three in a row at a 0.3 % share
      score 7.6); denials do not count toward it. A tool outage (``error_burst``) or a
      provider incident fails one action, usually for several agents at once, and is not
      the agent's fault. Nor is a fleet-wide outage: when at least ``min_peers`` other
      agents of the fleet, and at least ``fleet_share`` of it, have three or more failures
      within ``peer_window_s``, nobody's storm is reported (page the platform team, not
      each agent's owner).
    * ``denial_burst``: at least ``min_denials`` denials with a score of at least
      ``denial_threshold`` against the agent's own denial share (prior ``denial_prior``).
      Denials are rare in normal traffic (expired approvals), so a few in a minute mean the
      agent is trying things it is not allowed to do (``privilege_probing``).

    Parameters
    ----------
    window_s
        Length of the sliding window, seconds of event time (default 60; the event count
        comes from the baseline's buckets, so up to one bucket more is covered).
    threshold
        Minimum score of the ``error_storm`` test (default 5.5: p < 3e-6).
    spread_threshold
        Minimum score without the shared and the most failing action (default 1.5).
    min_spread
        Minimum failures without the shared and the most failing action (default 2).
    min_failures
        Minimum failures in the window for ``error_storm`` (default 4).
    denial_threshold
        Minimum score of the ``denial_burst`` test (default 4.0).
    min_denials
        Minimum denials in the window for ``denial_burst`` (default 2).
    half_life
        Half-life of the learned failure and denial shares, in events (default 1000).
    prior_rate
        Prior failure probability (default 0.02).
    denial_prior
        Prior denial probability (default 0.002).
    prior_weight
        Weight of both priors, in events (default 200).
    min_peers
        Failing peers that make a failure wave fleet-wide, at least (default 3).
    fleet_share
        Share of the fleet's agents that must be failing for that, at least (default 0.1).
    peer_window_s
        How recent the peers' failures must be, seconds (default 120).
    streak_threshold
        Minimum score of the streak test, after its correction (default 6.5: p < 3e-7).
    min_streak
        Minimum errors in a streak (default 3).
    streak_events
        Longest streak, in the agent's events (default 12).
    lone_spread
        Minimum failures without the shared and the most failing action when no peer failed
        that action within ``peer_window_s`` (default 1; ``min_spread`` or more turns this
        off).
    lone_peers
        Peers that may each have failed that action once within ``peer_window_s`` for it
        to count as failing for this agent alone (default 1: an ordinary failure of a peer
        in a busy fleet is not an outage; 0: no peer failure at all).

    Notes
    -----
    Catches ``error_storm`` (most calls failing across tools) after a handful of failed
    calls (three in a row for an agent that rarely fails; a failing call, its retries and
    one failure of a second tool when no peer fails the first) and ``privilege_probing``
    after two or three denials; stays quiet on a tool outage that hits a few agents
    (``error_burst``: one action, usually failed by a peer too) and on the occasional
    failure.
    Limits: a storm confined to a single action of a single agent (its own credentials
    expired for one tool) is not an ``error_storm`` here; nor is a storm while a tenth of
    the fleet is failing too. Agents with very few events need a higher share of failures
    before the test is significant; two outages of different tools hitting one agent at
    the same moment look like a storm until the peers' failures show, and so does an
    outage that reaches the agent before any peer calls the broken tool, if an ordinary
    failure of another tool coincides.

    Examples
    --------
    >>> import textwrap
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> det, b, state, fleet = FailureRate(), AgentBaseline("a1", "ops"), {}, {}
    >>> found = []
    >>> for i in range(600):
    ...     storm = i >= 590 and i % 3
    ...     e = ActionEvent(event_id=f"e{i}", agent_id="a1", fleet="ops",
    ...                     ts=t0 + timedelta(seconds=5 * i),
    ...                     action=("read_logs", "http_get", "chat")[i % 3],
    ...                     status="error" if (storm or i % 97 == 0) else "ok")
    ...     found += det.update(e, b, state, fleet)
    ...     b.update(e)
    >>> print(textwrap.fill(found[0].summary, 90))
    a1 failed 6 of 21 events in the last 100 s (29%) vs a usual 1.7% (p = 1.1e-06) on 3
    actions: chat 3, http_get 2, read_logs 1
    >>> found[0].kind, found[0].evidence[0], found[0].actions
    ('error_storm', 'e596', ('chat', 'http_get', 'read_logs'))
    """

    name: ClassVar[str] = "failure_rate"

    def __init__(
        self,
        *,
        window_s: float = 60.0,
        threshold: float = 5.5,
        spread_threshold: float = 1.5,
        min_spread: int = 2,
        min_failures: int = 4,
        denial_threshold: float = 4.0,
        min_denials: int = 2,
        half_life: float = 1000.0,
        prior_rate: float = 0.02,
        denial_prior: float = 0.002,
        prior_weight: float = 200.0,
        min_peers: int = 3,
        fleet_share: float = 0.1,
        peer_window_s: float = 120.0,
        streak_threshold: float = 6.5,
        min_streak: int = 3,
        streak_events: int = 12,
        lone_spread: int = 1,
        lone_peers: int = 1,
    ) -> None:
        self.window_s = window_s
        self.threshold = threshold
        self.spread_threshold = spread_threshold
        self.min_spread = min_spread
        self.min_failures = min_failures
        self.denial_threshold = denial_threshold
        self.min_denials = min_denials
        self.half_life = half_life
        self.prior_rate = prior_rate
        self.denial_prior = denial_prior
        self.prior_weight = prior_weight
        self.min_peers = min_peers
        self.fleet_share = fleet_share
        self.peer_window_s = peer_window_s
        self.streak_threshold = streak_threshold
        self.min_streak = min_streak
        self.streak_events = streak_events
        self.lone_spread = lone_spread
        self.lone_peers = lone_peers
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
        status = event.status
        ok = state.get("ok")
        if ok is None:
            state.update(f=self._fails.new_state(), d=self._denials.new_state(), r=[], ok=0)
            fleet = fleet_state.get("failure_rate")
            if fleet is None:
                fleet = fleet_state["failure_rate"] = _Fleet()
            fleet.agents += 1
            ok = 0
        if status == "ok":
            state["ok"] = ok + 1  # successes are settled into the shares at the next failure
            return []
        self._fails.learn_zeros(state["f"], ok)
        self._denials.learn_zeros(state["d"], ok)
        state["ok"] = 0
        index = state.get("i", 0) + ok + 1  # this event's number among the agent's events
        state["i"] = index

        ts = event.ts_epoch
        fleet = fleet_state.get("failure_rate")
        if fleet is None:  # agent state restored (restart) or the agent moved fleets
            fleet = fleet_state["failure_rate"] = _Fleet()
            fleet.agents += 1
        fleet.record(event.agent_id, event.action, ts)
        denied = status == "denied"
        ring = state["r"]
        ring.append([ts, event.action, 1 if denied else 0, event.event_id, index])
        horizon = ts - 2.0 * self.window_s  # the window covers at most one bucket more
        while ring and (ring[0][0] < horizon or len(ring) > _RING):
            del ring[0]

        window = baseline.window(self.window_s, at=ts)
        start = min(window.start, ts - self.window_s)
        recent = [item for item in ring if item[0] >= start]
        trials = max(window.count + 1, len(recent))
        seconds = ts - start
        findings: list[Finding] = []
        if denied:
            denials = [item for item in recent if item[2]]
            if len(denials) >= self.min_denials:
                usual = self._denials.expected(state["d"])
                score = self._denials.score_value(state["d"], len(denials), trials)
                if score >= self.denial_threshold:
                    findings.append(
                        self._finding(
                            "denial_burst", event, items=denials, trials=trials, score=score,
                            threshold=self.denial_threshold, usual=usual, seconds=seconds,
                        )
                    )  # fmt: skip
        usual = self._fails.expected(state["f"])
        failures = len(recent)
        score = self._fails.score_value(state["f"], failures, trials)
        storm = None
        if (
            failures >= self.min_failures
            and score >= self.threshold
            and self._spread(recent, trials, usual, fleet=fleet, agent=event.agent_id, ts=ts)
        ):
            storm = (recent, trials, score, seconds, self.threshold)
        elif not denied and len(ring) >= self.min_streak:
            streak = self._streak(ring, index, usual)
            if streak is not None and streak[2] >= self.streak_threshold:
                items, events, streak_score = streak
                if self._spread(items, events, usual, fleet=fleet, agent=event.agent_id, ts=ts):
                    span = ts - items[0][0]
                    storm = (items, events, streak_score, span, self.streak_threshold)
        if storm is not None and not self._fleet_wide(fleet, event, ts):
            items, events, storm_score, span, threshold = storm
            findings.append(
                self._finding(
                    "error_storm", event, items=items, trials=events, score=storm_score,
                    threshold=threshold, usual=usual, seconds=span,
                )
            )  # fmt: skip
        if not findings and score < 0.5 * self.threshold:
            self._fails.learn_value(state["f"], 1.0, 1.0)
            self._denials.learn_value(state["d"], 1.0 if denied else 0.0, 1.0)
        return findings

    def _streak(
        self, ring: list[list[Any]], index: int, usual: float
    ) -> tuple[list[list[Any]], int, float] | None:
        """The most significant run of recent errors: for each of the last ``j`` errors
        (``j >= min_streak``) within the agent's last ``streak_events`` events, ``j``
        errors out of the ``n`` events since the ``j``-th last one; the score is the best
        ``-log10`` p-value less ``log10`` of the number of runs tried (Bonferroni).
        Denials are left out: a burst of them is a ``denial_burst``."""
        errors = [item for item in ring if not item[2]]
        best: tuple[int, int, float] | None = None
        tried = 0
        for j in range(self.min_streak, len(errors) + 1):
            first = errors[-j]
            if len(first) < 5:  # a failure recorded before event numbers were kept
                break
            events = index - first[4] + 1
            if events > self.streak_events:
                break
            tried += 1
            value = -binomial_tail_log10(j, events, usual)
            if best is None or value > best[2]:
                best = (j, events, value)
        if best is None:
            return None
        j, events, value = best
        return errors[-j:], events, value - math.log10(tried)

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
        per_action: dict[str, int] = {}
        for item in items:
            per_action[item[1]] = per_action.get(item[1], 0) + 1
        horizon = self.peer_window_s
        own = {
            name: n for name, n in per_action.items() if not fleet.shared(name, agent, ts, horizon)
        }
        top = max(own.values(), default=0)
        rest = sum(own.values()) - top
        if rest >= self.min_spread:
            excluded = len(items) - rest
            spread = -binomial_tail_log10(rest, trials - excluded, usual)
            if spread >= self.spread_threshold:
                return True
        # a tool outage fails that tool for several agents: if nobody else failed the most
        # failing action lately, one failure elsewhere is enough
        return rest >= max(self.lone_spread, 1) and all(
            fleet.lone(name, agent, ts, horizon, self.lone_peers)
            for name, n in own.items()
            if n == top
        )

    def _fleet_wide(self, fleet: _Fleet, event: ActionEvent, ts: float) -> bool:
        peers = fleet.peers_failing(event.agent_id, ts, self.peer_window_s)
        return peers >= max(self.min_peers, self.fleet_share * fleet.agents)

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
        seconds: float,
    ) -> Finding:
        count = len(items)
        per_action: dict[str, int] = {}
        for item in items:
            per_action[item[1]] = per_action.get(item[1], 0) + 1
        ranked = sorted(per_action.items(), key=lambda kv: -kv[1])
        what = "failed" if kind == "error_storm" else "was denied"
        actions = ", ".join(f"{name} {n}" for name, n in ranked[:4])
        summary = (
            f"{event.agent_id} {what} {count} of {trials} events in the last {seconds:.0f} s "
            f"({count / trials:.0%}) vs a usual {usual:.1%} (p = {10.0**-score:.1e}) on "
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
