"""``budget``: hard per-agent spend and action-count limits over a window of event time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from agentwatch.detectors.base import JSON, AgentDetector, Finding, register_detector
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.schemas import ActionEvent

__all__ = ["Budget"]

_LIMIT_KEYS = frozenset({"max_cost_usd", "max_actions", "window_s"})


@register_detector
class Budget(AgentDetector):
    """Hard limits: at most ``max_cost_usd`` and ``max_actions`` per agent per ``window_s``.

    A budget is not a statistical test: it is the ceiling a platform team writes down
    ("no agent of the support fleet spends more than $5 in five minutes"), a guard rail
    that holds whatever the agent usually does. It reads the agent's shared event-time
    buckets, so it costs nothing to keep and agrees with the live worker and backtests.

    The defaults are guard rails that mean the same on every fleet. A dollar figure does
    not: prices differ up to 100x within one fleet, and a fleet-wide move to a pricier
    model is a benign change that a spend ceiling tuned on yesterday's prices would halt.
    So no spend limit is set by default (set one per fleet, from its own bills), and the
    call limit is a flood guard far above what an LLM-driven agent does (six hundred calls
    within a minute or two: five to ten a second), not a rate that is busy for one agent
    and idle for another. Runaways at agent speeds are the statistical detectors' job
    (``runaway_loop``, ``cost_spike``); the budget stops what no agent should ever do.

    Parameters
    ----------
    max_cost_usd
        Spend limit per agent per window (USD); ``None`` (the default) disables it.
    max_actions
        Event-count limit per agent per window; ``None`` disables it. Default 600 (the
        busiest agents of the tuning worlds peak at 151 events in such a window).
    window_s
        Window length in seconds of event time. Default 60. Windows are made of the
        baseline's whole buckets (60 s by default), so the window actually summed is
        between ``window_s`` and ``window_s`` plus one bucket long: a limit can trip up to
        one bucket early, never late.
    fleets
        Per-fleet overrides ``{fleet: {"max_cost_usd": ..., "max_actions": ...,
        "window_s": ...}}``; keys not given fall back to the values above. Default ``None``.

    Notes
    -----
    Findings have kind ``cost_budget`` or ``action_budget``, ``observed`` = the window's
    total including the current event, ``threshold`` = the limit and ``score`` = their
    ratio. The common path is O(1): the detector keeps, per agent, an upper bound of each
    window total (the last exact total plus everything added since) and only sums the
    buckets again when the bound reaches the limit.

    Examples
    --------
    >>> from datetime import UTC, datetime, timedelta
    >>> from agentwatch.detectors.baseline import AgentBaseline
    >>> from agentwatch.schemas import ActionEvent
    >>> budget = Budget(max_cost_usd=1.0, max_actions=None, window_s=60)
    >>> baseline, state, found = AgentBaseline("a1"), {}, []
    >>> for i in range(30):
    ...     event = ActionEvent(event_id=f"e{i}", agent_id="a1", action="chat", kind="llm",
    ...                         ts=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
    ...                         cost_usd=0.05)
    ...     found += budget.update(event, baseline, state, {})
    ...     baseline.update(event)
    >>> len(found), found[0].evidence
    (10, ('e20',))
    >>> print(found[0].summary)
    a1 spent $1.05 in the last 60 s of event time (21 events), over its budget of $1.00 per 60 s.
    """

    name: ClassVar[str] = "budget"

    def __init__(
        self,
        *,
        max_cost_usd: float | None = None,
        max_actions: int | None = 600,
        window_s: float = 60.0,
        fleets: Mapping[str, Mapping[str, float | None]] | None = None,
    ) -> None:
        self.max_cost_usd = max_cost_usd
        self.max_actions = max_actions
        self.window_s = window_s
        self.fleets = None if fleets is None else {f: dict(v) for f, v in fleets.items()}
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        for fleet, overrides in (self.fleets or {}).items():
            unknown = sorted(set(overrides) - _LIMIT_KEYS)
            if unknown:
                raise ValueError(f"fleet {fleet!r}: unknown budget keys {unknown}")
        self._by_fleet: dict[str, tuple[float | None, float | None, float]] = {}  # _limits

    def _limits(self, fleet: str) -> tuple[float | None, float | None, float]:
        overrides = None if self.fleets is None else self.fleets.get(fleet)
        if overrides is None:
            return self.max_cost_usd, self.max_actions, self.window_s
        return (
            overrides.get("max_cost_usd", self.max_cost_usd),
            overrides.get("max_actions", self.max_actions),
            float(overrides.get("window_s") or self.window_s),
        )

    def update(
        self,
        event: ActionEvent,
        baseline: AgentBaseline,
        state: dict[str, JSON],
        fleet_state: dict[str, JSON],
    ) -> list[Finding]:
        """Flag the event if it takes the agent's window total over a limit."""
        limits = self._by_fleet.get(event.fleet)
        if limits is None:
            limits = self._by_fleet[event.fleet] = self._limits(event.fleet)
        max_cost, max_actions, window_s = limits
        if max_cost is None and max_actions is None:
            return []
        cost = event.cost_usd
        # upper bounds of the window totals before this event (None: unknown, recompute)
        ub_cost = state.get("c")
        ub_n = state.get("n")
        if ub_cost is None or ub_n is None:
            ub_cost = ub_n = float("inf")
        ub_cost += cost
        ub_n += 1
        cost_hit = max_cost is not None and ub_cost > max_cost
        count_hit = max_actions is not None and ub_n > max_actions
        if not (cost_hit or count_hit):
            state["c"] = ub_cost
            state["n"] = ub_n
            return []
        window = baseline.window(window_s, at=max(event.ts_epoch, baseline.watermark or 0.0))
        total_cost = window.cost_usd + cost
        total_n = window.count + 1
        state["c"] = total_cost
        state["n"] = total_n
        out: list[Finding] = []
        seconds = round(window_s)
        if max_cost is not None and total_cost > max_cost:
            out.append(
                Finding(
                    kind="cost_budget",
                    score=total_cost / max_cost if max_cost > 0 else float("inf"),
                    threshold=1.0,
                    observed=total_cost,
                    baseline=float(max_cost),
                    summary=(
                        f"{event.agent_id} spent ${total_cost:.2f} in the last {seconds} s of "
                        f"event time ({total_n} events), over its budget of ${max_cost:.2f} "
                        f"per {seconds} s."
                    ),
                    evidence=(event.event_id,),
                )
            )
        if max_actions is not None and total_n > max_actions:
            out.append(
                Finding(
                    kind="action_budget",
                    score=total_n / max_actions if max_actions > 0 else float("inf"),
                    threshold=1.0,
                    observed=float(total_n),
                    baseline=float(max_actions),
                    summary=(
                        f"{event.agent_id} made {total_n} calls in the last {seconds} s of "
                        f"event time, over its budget of {max_actions} per {seconds} s "
                        f"(${total_cost:.2f} spent)."
                    ),
                    evidence=(event.event_id,),
                )
            )
        return out
