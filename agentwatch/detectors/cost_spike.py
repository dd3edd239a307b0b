"""``cost_spike``: an agent's cost per call jumps against its own baseline and its peers."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from agentwatch.detectors.base import AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.robust_zscore import RobustZScore
from agentwatch.schemas import ActionEvent

__all__ = ["CostSpike"]

_EVIDENCE = 5  # recent costed calls kept per agent for the evidence list
_FLEET_EVERY = 4  # every agent feeds every 4th of its calls to the fleet's statistics


class _Fleet:
    """Per-fleet memory: model prices, who used which model when, the fleet's level stats."""

    __slots__ = ("level", "prices", "shared", "users")

    def __init__(self, level: list[float]) -> None:
        self.level = level
        self.prices: dict[str, float] = {}  # model -> EW log price per token
        self.users: dict[str, dict[str, float]] = {}  # model -> agent -> last use
        self.shared: dict[str, float] = {}  # model -> until when it counts as shared


@register_detector
class CostSpike(AgentDetector):
    """Sudden cost explosion of one agent: recent cost per call far above its own normal,
    unusual among its fleet peers, and not explained by a model its peers use too.

    Every event with a cost is one *call*. Its cost is put on a log scale and normalised by
    the unit price of its model: ``u = log(cost) - log(price per token)``, where the price
    is the fleet's typical price of that model when at least ``min_peers`` other agents of
    the fleet used the model in the last ``peer_window_s`` (a fleet-wide model upgrade is
    therefore no cost anomaly at all: everyone pays the new price), and the agent's own
    usual price otherwise (so an agent that alone switches to a premium model shows the
    whole jump). While a model no peer uses is younger than ``confirm_s`` for the agent,
    it does not fire yet: the first agents of a fleet-wide upgrade look exactly like that
    until their peers follow. The agent's *recent level* is an exponentially weighted mean
    of ``u`` over its last few calls (half-life ``recent_calls``); it restarts when the
    price reference switches between the fleet's and the agent's own.

    A finding (kind ``cost_spike``) needs all of:

    * the recent level at least ``threshold`` robust standard deviations above the agent's
      own baseline (a :class:`~agentwatch.detectors.robust_zscore.RobustZScore` of the
      recent level, half-life ``half_life`` calls, warm-up ``min_calls``);
    * recent cost per call at least ``min_ratio`` times the agent's usual;
    * the recent level at least ``fleet_threshold`` robust standard deviations above the
      fleet's (the same statistic over a quarter of the fleet's calls, in ``fleet_state``);
    * spend over the last one to two minutes (the baseline's buckets plus this call) of at
      least ``min_spend_per_min`` USD per minute, so cheap agents do not page.

    Flagged calls are learned neither into the agent's baseline nor into the fleet's.

    Parameters
    ----------
    threshold
        Robust z-score of the recent level against the agent's own baseline (default 5.0).
    fleet_threshold
        Robust z-score of the recent level against the fleet's (default 2.0).
    min_ratio
        Recent cost per call over the agent's usual, at least (default 3.0).
    min_spend_per_min
        Recent spend in USD per minute, at least (default 0.01).
    recent_calls
        Half-life of the recent level, in calls (default 3.0).
    half_life
        Half-life of the agent's baseline, in calls (default 500.0).
    min_calls
        Calls an agent must have made before it can fire (default 50).
    min_peers
        Other fleet agents that must use a model for its price to be the fleet's (default 1).
    peer_window_s
        How recent that use must be, in seconds of event time (default 1800.0).
    confirm_s
        How long a model no peer uses must have been in use before it can fire (default 30).

    Notes
    -----
    Catches ``cost_explosion`` (context stuffing: tokens x5-10; a switch to a premium
    model) typically within 3-5 calls. Stays silent on a fleet-wide model upgrade and on
    agents whose cost is high but usual. Limits: a slow creep is
    :class:`~agentwatch.detectors.cost_drift.CostDrift`'s job (the baseline follows it); an
    explosion that only raises the *number* of calls at an unchanged cost per call is the
    ``budget`` detector's; a switch to the premium model the fleet has already upgraded to
    only shows its token growth; events with a cost but no tokens (priced API calls) are
    compared on their raw cost. The bookkeeping of who uses which model uses the agent's
    previous event time (cheaper than parsing this one's), so it lags by one event.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> def call(agent, i, tokens, model="gpt-4o-mini"):
    ...     return ActionEvent(event_id=f"{agent}-{i}", agent_id=agent, fleet="support",
    ...                        ts=t0 + timedelta(seconds=10 * i), action="chat", kind="llm",
    ...                        model=model, input_tokens=tokens, output_tokens=200,
    ...                        cost_usd=(tokens * 0.15 + 200 * 0.6) / 1e6)
    >>> det = CostSpike(min_spend_per_min=0.001)
    >>> fleet, baselines, states = {}, {}, {}
    >>> found = []
    >>> for i in range(300):
    ...     for agent in ("a", "b", "c", "d"):
    ...         tokens = 2500 + 100 * (i % 7) + (30_000 if agent == "a" and i >= 295 else 0)
    ...         e = call(agent, i, tokens)
    ...         b = baselines.setdefault(agent, AgentBaseline(agent, "support"))
    ...         found += det.update(e, b, states.setdefault(agent, {}), fleet)
    ...         b.update(e)
    >>> found[0].kind, found[0].evidence[0]
    ('cost_spike', 'a-29...')
    """

    name: ClassVar[str] = "cost_spike"
    needs_cost = True  # events without a cost are skipped (the engine does not call)

    def __init__(
        self,
        *,
        threshold: float = 5.0,
        fleet_threshold: float = 2.0,
        min_ratio: float = 3.0,
        min_spend_per_min: float = 0.01,
        recent_calls: float = 3.0,
        half_life: float = 500.0,
        min_calls: int = 50,
        min_peers: int = 1,
        peer_window_s: float = 1800.0,
        confirm_s: float = 30.0,
    ) -> None:
        self.threshold = threshold
        self.fleet_threshold = fleet_threshold
        self.min_ratio = min_ratio
        self.min_spend_per_min = min_spend_per_min
        self.recent_calls = recent_calls
        self.half_life = half_life
        self.min_calls = min_calls
        self.min_peers = min_peers
        self.peer_window_s = peer_window_s
        self.confirm_s = confirm_s
        self._log_ratio = math.log(min_ratio)
        self._own = RobustZScore(half_life=half_life, min_observations=min_calls, clip=3.0)
        self._fleet = RobustZScore(half_life=4.0 * half_life, min_observations=min_calls)
        self._recent = -math.expm1(-math.log(2.0) / recent_calls)
        self._price_alpha = -math.expm1(-math.log(2.0) / 200.0)
        self._fleet_alpha = -math.expm1(-math.log(2.0) / 50.0)  # on every 4th call

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
        fleet: _Fleet | None = fleet_state.get("cost_spike")
        if fleet is None:
            fleet = fleet_state["cost_spike"] = _Fleet(self._fleet.new_state())
        v = state.get("v")
        if v is None:
            # v: calls, recent level, own usual log price, reference in use (1 = the
            # fleet's price, 0 = the agent's own), since when it uses a model alone
            v = state["v"] = [0, 0.0, 0.0, 1, 0.0]
            state["own"] = self._own.new_state()
            state["ids"] = [""] * _EVIDENCE
        # bookkeeping time: the agent's previous event (exact enough, cheaper than ts)
        now = baseline.watermark
        if now is None:
            now = event.ts_epoch
        n = v[0]
        log_cost = math.log(cost)
        tokens = event.input_tokens + event.output_tokens
        model = event.model
        log_price = 0.0
        fleet_ref = 1
        ref = 0.0
        young = False
        if tokens > 0 and model is not None:
            log_price = log_cost - math.log(tokens)
            users = fleet.users.get(model)
            if users is None:
                users = fleet.users[model] = {}
            users[event.agent_id] = now
            if now < fleet.shared.get(model, -math.inf) or self._shared(fleet, model, now):
                ref = fleet.prices.get(model, log_price)
            else:  # the agent's own usual price: a premium switch shows in full
                fleet_ref = 0
                ref = v[2] if n else log_price
                ts = event.ts_epoch
                if v[3]:
                    v[4] = ts  # it just started using a model its peers do not use
                young = ts - v[4] < self.confirm_s
        u = log_cost - ref  # cost in units of the reference price per token
        # the recent level restarts when the reference switches between fleet and own
        level = u if n == 0 or fleet_ref != v[3] else v[1] + self._recent * (u - v[1])
        v[0] = n + 1
        v[1] = level
        v[3] = fleet_ref
        state["ids"][n % _EVIDENCE] = event.event_id

        own = state["own"]
        if n >= self.min_calls:
            z_own = (level - own[1]) / self._own.spread(own)
            if z_own >= self.threshold and level - own[1] >= self._log_ratio:
                z_fleet = self._fleet.zscore_value(fleet.level, level)
                if z_fleet >= self.fleet_threshold:
                    spend = self._spend(baseline, event, cost)
                    if spend >= self.min_spend_per_min:
                        if young:  # a model new to the agent: wait for its peers to adopt it
                            return []
                        return [
                            self._finding(
                                event, state=state, ref=ref, z_own=z_own, z_fleet=z_fleet,
                                spend=spend,
                            )
                        ]  # fmt: skip
        self._own.learn_value(own, level)
        if model is None or tokens <= 0:
            return []
        v[2] += (1.0 if n == 0 else self._price_alpha) * (log_price - v[2])
        if n % _FLEET_EVERY == 0:  # the fleet has plenty of calls: learn from a quarter
            self._fleet.learn_value(fleet.level, level)
            if fleet_ref:
                old = fleet.prices.get(model, log_price)
                fleet.prices[model] = old + self._fleet_alpha * (log_price - old)
        return []

    def _spend(self, baseline: AgentBaseline, event: ActionEvent, cost: float) -> float:
        """USD per minute over the last minute or two (this event included)."""
        ts = event.ts_epoch
        window = baseline.window(60.0, at=ts)
        seconds = max(ts - min(window.start, ts - 60.0), 60.0)
        return (window.cost_usd + cost) * 60.0 / seconds

    def _shared(self, fleet: _Fleet, model: str, now: float) -> bool:
        """Whether at least ``min_peers`` other agents of the fleet used ``model`` lately."""
        users = fleet.users[model]
        since = now - self.peer_window_s
        recent = sum(1 for seen in users.values() if seen >= since)
        if len(users) > 2 * recent + 64:  # forget agents that stopped using it
            for key in [key for key, seen in users.items() if seen < since]:
                del users[key]
        if recent - 1 >= self.min_peers:
            fleet.shared[model] = now + 60.0  # trust it for a minute
            return True
        return False

    def _finding(
        self,
        event: ActionEvent,
        *,
        state: dict[str, Any],
        ref: float,
        z_own: float,
        z_fleet: float,
        spend: float,
    ) -> Finding:
        v, ids = state["v"], state["ids"]
        recent = math.exp(v[1] + ref)
        usual = math.exp(state["own"][1] + ref)
        ratio = recent / usual
        what = f"model {event.model}" if event.model else f"action {event.action}"
        summary = (
            f"{event.agent_id} cost per call is {ratio:.1f}x its usual "
            f"(${recent:.4f} vs ${usual:.4f} per call on {what}): robust z {z_own:.1f} "
            f"against its own baseline and {z_fleet:.1f} against fleet {event.fleet}, "
            f"spending ${spend:.3f}/min"
        )
        calls = v[0]
        recent_ids = (ids[(calls - k) % _EVIDENCE] for k in range(1, _EVIDENCE + 1))
        return Finding(
            kind="cost_spike",
            score=z_own,
            threshold=self.threshold,
            observed=recent,
            baseline=usual,
            summary=summary,
            evidence=tuple(item for item in recent_ids if item),
            actions=(event.action,),
        )
