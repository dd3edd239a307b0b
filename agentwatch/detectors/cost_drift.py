"""``cost_drift``: slow creep of an agent's cost per call, over hours."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from agentwatch.detectors.base import AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.drift import DriftDetector
from agentwatch.schemas import ActionEvent

__all__ = ["CostDrift"]

_EVIDENCE = 5  # most recent calls kept per agent for the evidence
_FLEET_EVERY = 4  # every agent feeds every 4th of its calls to the fleet-wide test


class _Fleet:
    """Per-fleet memory: a CUSUM of its agents' standardized deviations, a change epoch."""

    __slots__ = ("epoch", "g")

    def __init__(self) -> None:
        self.g = 0.0  # upward CUSUM of the agents' deviations from their own references
        self.epoch = 0  # bumped whenever the whole fleet moved


@register_detector
class CostDrift(AgentDetector):
    """Slow, lasting creep of an agent's cost per call that its fleet does not share.

    Every event with a cost is one call. Its size is measured as tokens at constant
    relative prices, ``input_tokens + output_weight * output_tokens`` (the raw cost for
    calls without tokens): the part of the cost the agent controls. A model's price is the
    fleet's decision, so a fleet-wide model upgrade is no drift at all. The log of that
    size feeds a Page-Hinkley test (a :class:`~agentwatch.detectors.drift.DriftDetector`)
    whose reference is the agent's own long-run mean (half-life ``reference_calls``
    calls), in units of the agent's own robust spread, so expensive and cheap agents share
    one parameter set. Prompts that grow a few percent per hour add up: once the statistic
    passes ``threshold`` *and* the recent level (half-life ``recent_calls``) is still above
    the reference, the agent is flagged on every further call, and its reference stops
    learning (a drift must not become the new normal while it is reported). A statistic
    that passed the threshold while the recent level is back to normal was a transient
    (a burst of long prompts): it is cleared.

    Every fourth call of every warm agent also feeds its standardized deviation into a
    fleet-wide CUSUM (``fleet_state``). When the fleet's agents deviate from their own
    references by more than ``fleet_delta`` standard deviations on average (a longer system
    prompt for everyone), that is a benign fleet-wide change: the fleet's epoch advances
    and every agent of the fleet restarts its reference on the new level (after
    ``min_calls`` calls of warm-up).

    Parameters
    ----------
    delta
        Tolerated creep, in the agent's standard deviations (default 0.5).
    threshold
        Page-Hinkley threshold, in standard deviations (default 50).
    min_calls
        Warm-up calls before the reference is trusted (default 100).
    fleet_delta
        Mean deviation of the fleet's agents that counts as the fleet moving (default 0.5).
    fleet_threshold
        CUSUM threshold of the fleet test (default 30).
    recent_calls
        Half-life, in calls, of the recent level (default 20).
    reference_calls
        Half-life, in calls, of the agent's long-run reference (default 2000).
    output_weight
        Weight of an output token against an input token (default 4, typical of price
        lists).
    clip
        Per-call deviations are winsorized at this many standard deviations (default 1.5),
        so a short explosion of cost cannot by itself pass for a drift.

    Notes
    -----
    Catches ``cost_drift`` (tokens per call growing x3-5 over hours with no step) usually
    when the cost has grown by 40-80 %; detection takes one to two hours, which a slow
    creep allows. Ignores fleet-wide model upgrades and other shared shifts, stationary
    noise including session-to-session prompt growth, and short explosions (those are
    :class:`~agentwatch.detectors.cost_spike.CostSpike`'s). Limits: a drift that comes from
    moving calls to pricier models, not from more tokens, is invisible here; a fleet of
    fewer than four agents cannot tell one agent's drift from the fleet's; a fleet-wide
    change restarts every agent of that fleet, including one that was drifting then.

    Examples
    --------
    >>> import random
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> rng = random.Random(3)
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> det, fleet, states, found = CostDrift(), {}, {}, []
    >>> b = AgentBaseline("a0", "f")  # not read by this detector
    >>> for i in range(3000):  # 6 agents, one call each every 30 s; agent a0 creeps 4x
    ...     for k in range(6):
    ...         creep = 1.0 + 3.0 * max(i - 1000, 0) / 2000 if k == 0 else 1.0
    ...         e = ActionEvent(event_id=f"a{k}-{i}", agent_id=f"a{k}", fleet="f",
    ...                         ts=t0 + timedelta(seconds=30 * i + k), action="chat",
    ...                         kind="llm", cost_usd=0.01 * creep * rng.lognormvariate(0, 0.4))
    ...         out = det.update(e, b, states.setdefault(e.agent_id, {}), fleet)
    ...         found += [(i, f) for f in out]
    >>> i, first = found[0]
    >>> first.kind, {f.evidence[0][:3] for _, f in found}, 1150 < i < 1600
    ('cost_drift', {'a0-'}, True)
    """

    name: ClassVar[str] = "cost_drift"
    needs_cost = True  # events without a cost are skipped (the engine does not call)

    def __init__(
        self,
        *,
        delta: float = 0.5,
        threshold: float = 50.0,
        min_calls: int = 100,
        fleet_delta: float = 0.5,
        fleet_threshold: float = 30.0,
        recent_calls: float = 20.0,
        reference_calls: float = 2000.0,
        output_weight: float = 4.0,
        clip: float = 1.5,
    ) -> None:
        self.delta = delta
        self.threshold = threshold
        self.min_calls = min_calls
        self.fleet_delta = fleet_delta
        self.fleet_threshold = fleet_threshold
        self.recent_calls = recent_calls
        self.reference_calls = reference_calls
        self.output_weight = output_weight
        self.clip = clip
        self._agent = DriftDetector(
            delta=delta,
            threshold=threshold,
            min_observations=min_calls,
            clip=clip,
            half_life=reference_calls,
        )
        self._recent = -math.expm1(-math.log(2.0) / recent_calls)

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, Any],
        fleet_state: dict[str, Any],
    ) -> list[Finding]:
        cost = event.cost_usd
        if cost <= 0.0:
            return []
        fleet: _Fleet | None = fleet_state.get("cost_drift")
        if fleet is None:
            fleet = fleet_state["cost_drift"] = _Fleet()
        tokens = event.input_tokens + self.output_weight * event.output_tokens
        # tokens at constant relative prices: what the agent controls (a new model price
        # is a fleet's decision, not the agent's drift); raw cost for untokenized calls
        value = math.log(tokens) if tokens > 0 else math.log(cost)
        v = state.get("v")
        if v is None or v[0] != fleet.epoch:
            # first call, or the fleet moved: start afresh on the current level
            v = state["v"] = [fleet.epoch, value, math.log(cost), 0]
            state["d"] = self._agent.new_state()
            state["ids"] = [""] * _EVIDENCE
        # v: fleet epoch, recent level, recent log cost, calls (for the evidence ring)
        recent = self._recent
        level = v[1] = v[1] + recent * (value - v[1])
        v[2] += recent * (math.log(cost) - v[2])
        calls = v[3]
        state["ids"][calls % _EVIDENCE] = event.event_id
        v[3] = calls + 1

        drift = state["d"]
        agent = self._agent
        z = agent.advance(drift, value)  # the statistic moves; the reference learns below
        if drift[0] >= self.min_calls:
            # the fleet's view: everyone's standardized deviation from their own reference
            if calls % _FLEET_EVERY == 0 and self._fleet_step(fleet, z):
                return []
            if drift[3] >= self.threshold:
                if level - drift[1] >= self.delta * agent.scale(drift):
                    return [self._finding(event, state, drift[3])]
                drift[3] = 0.0  # back to the usual level: it was a transient, not a drift
        agent.learn_reference(drift, value)
        return []

    def _fleet_step(self, fleet: _Fleet, z: float) -> bool:
        """Feed one agent deviation to the fleet's CUSUM; True if the whole fleet moved."""
        g = fleet.g + z - self.fleet_delta
        if g >= self.fleet_threshold:
            fleet.epoch += 1  # every agent of the fleet restarts on its next call
            fleet.g = 0.0
            return True
        fleet.g = g if g > 0.0 else 0.0
        return False

    def _finding(self, event: ActionEvent, state: dict[str, Any], g_up: float) -> Finding:
        drift, v, ids = state["d"], state["v"], state["ids"]
        recent, usual = math.exp(v[1]), math.exp(drift[1])
        summary = (
            f"{event.agent_id} tokens per call have crept up to {recent / usual:.1f}x their "
            f"long-run level ({recent:,.0f} vs {usual:,.0f} input + {self.output_weight:g} x "
            f"output tokens, now ${math.exp(v[2]):.4f} per call): Page-Hinkley "
            f"{g_up:.0f} >= {self.threshold:.0f} standard deviations over {drift[0]:.0f} "
            f"calls, while fleet {event.fleet} stayed flat"
        )
        return Finding(
            kind="cost_drift",
            score=g_up / self.threshold,
            threshold=1.0,
            observed=recent,
            baseline=usual,
            summary=summary,
            evidence=tuple(
                ids[(v[3] - k) % _EVIDENCE]
                for k in range(1, _EVIDENCE + 1)
                if ids[(v[3] - k) % _EVIDENCE]
            ),
            actions=(event.action,),
        )
