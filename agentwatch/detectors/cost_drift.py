"""``cost_drift``: a cost ramp, an agent's calls growing over 30 minutes to hours."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from agentwatch.detectors.base import Finding, register_detector
from agentwatch.detectors.cost_spike import (
    _CALLS,
    _EVIDENCE,
    _LAST,
    _M,
    _S,
    _SUM,
    _UCOST,
    CostSpike,
)
from agentwatch.schemas import ActionEvent

__all__ = ["CostDrift"]


@register_detector
class CostDrift(CostSpike):
    """A ramp of one agent's cost per call, over half an hour to many hours, that its fleet
    does not share.

    The machinery is :class:`~agentwatch.detectors.cost_spike.CostSpike`'s size path, with a
    baseline that a ramp cannot drag along and a smaller jump to look for. Every call's size,
    ``log(input_tokens + output_weight * output_tokens)``, is compared with the agent's own
    baseline minus its fleet's change over the same period
    (:class:`~agentwatch.detectors.cost_context.FleetShift`). The baseline's half-life is
    ``memory_s`` of event time, and never less than ``min_memory_calls`` calls, so a
    sparse agent and a busy one both remember hours and a ramp stays visible against it
    (an exponentially weighted mean lags a linear ramp by its mean age, about 1.44 half-lives).
    An upward CUSUM with reference ``log(min_factor) / 2`` accumulates the deviations, and
    its threshold comes from the false-alarm budget fitted to the peaks of the agent's own
    past excursions (:class:`~agentwatch.detectors.calibration.BudgetThreshold`), exactly as
    for the spike. It fires when the growth is the agent's own: the peers seen since the
    excursion started did not grow with it, or the agent has no peers. Unlike the spike, no
    growth fires without that verdict, however large: a ramp can wait for its peers. An
    excursion still waiting for it ``settle_s`` after it first reached the threshold is
    dropped, unlearned: a sparse agent's next call may come hours later, and a warning
    about calls that old helps no one (a ramp that goes on reaches the threshold again).

    A step of the fleet's shift (by ``log(benign_factor) / 2`` or more, as the agent sees it
    at its calls) opens ``settle_s`` during which the agent's excursions are followed and
    learned but not judged. A fleet-wide change moves the tail of the calls too (under a
    prompt twice as long, the longest sessions grew more than the median call on the
    simulator's worlds), and the agent's threshold, fitted to the tail before the change,
    learns the new one from those excursions.

    A ramp to ``min_factor`` accumulates evidence from about ``sqrt(min_factor)`` times its
    usual cost on, so a ramp is flagged around or soon after it doubles the cost.

    Model prices are not watched (a model's price is the fleet's decision, and a lone
    switch is the spike's): a fleet-wide model upgrade is no drift at all.

    Parameters
    ----------
    false_alarms_per_agent_day
        The false-alarm budget: expected anomalies of a normal agent per day (default
        0.005: a drift warning lasts, so it gets half the spike's budget).
    min_factor
        The growth of the cost per call a ramp must reach to be worth a warning, as a
        multiple (default 3.0).
    benign_factor
        The largest growth of every call a fleet-wide change may bring unannounced (default
        2.0); a move of the fleet's shift by half its logarithm is a step.
    memory_s
        Half-life of the agent's baseline in seconds of event time (default 14,400: 4 h).
    min_memory_calls
        The baseline's half-life is at least this many calls (default 200).
    min_calls
        Calls an agent makes before it is judged (default 100): its baseline must span
        several sessions, whose prompts grow as they go.
    rollout_s
        The time within which a fleet-wide change reaches every agent (default 120).
    rollout_error
        Accepted chance of taking an agent of a fleet-wide change for a lone one (default
        0.05: a warning, not a page; at 0.01 a ramp to 2x in a fleet of eight would need
        more peers than it has to be told from a new prompt for everyone).
    output_weight
        Weight of an output token against an input token in a call's size (default 4).
    settle_s
        Seconds after a step of the fleet's shift during which the agent's excursions are
        learned, not judged, and the longest an excursion waits for its fleet's verdict
        (default 1,800: the half hour a ramp may take to be flagged after it doubles the
        cost).

    Notes
    -----
    Catches cost ramps (tokens per call growing 3-4x over 30 minutes to 8 hours); a fast
    one typically around the time it doubles the cost, a ramp over many hours once it has
    grown faster than the baseline's memory. Catches cost explosions too, later than the
    spike. Silent on fleet-wide model upgrades and prompt changes and on stationary noise,
    including prompts that grow within each session. Limits: a ramp much slower than
    ``memory_s`` is absorbed by the baseline; a ramp that crosses its threshold within
    ``settle_s`` of a fleet-wide step is flagged when the settling ends; a drift that comes
    from moving calls to pricier models is invisible here; a ramp while the agent's fleet
    changes prompts is judged against the fleet's change.

    Examples
    --------
    >>> import random
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.schemas import ActionEvent
    >>> rng = random.Random(3)
    >>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
    >>> det, fleet, states, found = CostDrift(), {}, {}, []
    >>> for i in range(1200):  # 6 agents, a call each every 30 s; a0's prompt grows 4x in 1 h
    ...     for k in range(6):
    ...         ramp = 1.0 + 3.0 * min(max(i - 600, 0) / 120, 1.0) if k == 0 else 1.0
    ...         tokens = int(2000 * ramp * rng.lognormvariate(0, 0.35))
    ...         e = ActionEvent(event_id=f"a{k}-{i}", agent_id=f"a{k}", fleet="f",
    ...                         ts=t0 + timedelta(seconds=30 * i + k), action="chat",
    ...                         kind="llm", input_tokens=tokens, output_tokens=200,
    ...                         cost_usd=tokens * 1.5e-7 + 200 * 6e-7)
    ...         found += [(i, f) for f in det.update(e, None, states.setdefault(f"a{k}", {}),
    ...                                              fleet)]
    >>> i, first = found[0]
    >>> # a0's cost per call doubles at i = 656: flagged at most 30 minutes (60 calls) later
    >>> first.kind, {f.evidence[0][:3] for _, f in found}, 630 < i < 716
    ('cost_drift', {'a0-'}, True)
    """

    name: ClassVar[str] = "cost_drift"
    watch_prices: ClassVar[bool] = False
    # no growth, however large, fires without the fleet's verdict: a ramp can wait for its
    # peers, an explosion is the spike's, and an agent whose calls grow more than its
    # fleet's new prompt at first (its longest sessions, its tail) must not pass for one
    # that grew alone
    fast_path: ClassVar[bool] = False

    def __init__(
        self,
        *,
        false_alarms_per_agent_day: float = 0.005,
        min_factor: float = 3.0,
        benign_factor: float = 2.0,
        memory_s: float = 14_400.0,
        min_memory_calls: float = 200.0,
        min_calls: int = 100,
        rollout_s: float = 120.0,
        rollout_error: float = 0.05,
        output_weight: float = 4.0,
        settle_s: float = 1800.0,
    ) -> None:
        self.false_alarms_per_agent_day = false_alarms_per_agent_day
        self.min_factor = min_factor
        self.benign_factor = benign_factor
        self.memory_s = memory_s
        self.min_memory_calls = min_memory_calls
        self.min_calls = min_calls
        self.rollout_s = rollout_s
        self.rollout_error = rollout_error
        self.output_weight = output_weight
        self.settle_s = settle_s
        self.model_share = 0.0  # models are not watched: no share is ever compared
        self._setup(min_factor, benign_factor, min_memory_calls, false_alarms_per_agent_day)
        self._per_s = math.log(2.0) / memory_s

    def params(self) -> dict[str, Any]:
        params = super().params()
        del params["model_share"]
        return params

    def _baseline_alpha(self, v: list[Any], n: int, ts: float) -> float:
        """Half-life ``memory_s`` of event time since the last learned call, and never
        shorter than ``min_memory_calls`` calls; exact running means for the first
        ``min_calls`` (a longer running mean would follow a ramp that starts early)."""
        if n <= self.min_calls:
            return 1.0 / n
        gap = ts - v[_LAST]
        alpha = -math.expm1(-self._per_s * gap) if gap > 0.0 else 0.0
        return alpha if alpha < self._alpha else self._alpha

    def _finding(
        self, event: ActionEvent, state: dict[str, Any], h: float, jump: float | None
    ) -> Finding:
        v, ids = state["v"], state["ids"]
        usual = math.exp(v[_UCOST])
        recent = usual * math.exp(v[_SUM] / v[_M] if v[_M] else 0.0)  # over the excursion
        summary = (
            f"{event.agent_id} cost per call has grown to {recent / usual:.1f}x its "
            f"long-run level (${recent:.4f} vs ${usual:.4f} per call), while fleet "
            f"{event.fleet} did not; CUSUM {v[_S]:.2f} >= {h:.2f}, the threshold of its "
            f"false-alarm budget ({self.false_alarms_per_agent_day:g} per agent-day)"
        )
        calls = v[_CALLS]
        recent_ids = (ids[(calls - k) % _EVIDENCE] for k in range(1, _EVIDENCE + 1))
        return Finding(
            kind="cost_drift",
            score=v[_S],
            threshold=h,
            observed=recent,
            baseline=usual,
            summary=summary,
            evidence=tuple(item for item in recent_ids if item),
            actions=(event.action,),
        )
