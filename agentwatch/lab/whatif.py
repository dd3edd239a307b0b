"""What if a rule's thresholds were raised: measured by re-running the rules, not estimated.

For every rule whose detector has threshold parameters (:data:`THRESHOLDS`), copies of the
rule with those parameters made 10 %, 25 %, 50 % and 100 % stricter run in one extra replay
beside each other (rules are independent in the engine: each has its own detector state,
``for`` clock and cooldowns, and the shared baseline learns every event whatever fires, so a
copy's anomalies are exactly what that rule alone would raise). Each scenario is then scored
as the original backtest with that one rule swapped for its stricter copy.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from agentwatch.detectors.base import DETECTORS
from agentwatch.detectors.rules import Rule, RuleSet
from agentwatch.lab.backtest import run_backtest
from agentwatch.lab.evaluation import Evaluation, FleetSummary, evaluate
from agentwatch.lab.labels import Label
from agentwatch.schemas import Anomaly

__all__ = ["FACTORS", "THRESHOLDS", "Scenario", "WhatIf", "run_whatif", "scaled_rule"]

FACTORS: Final[tuple[float, ...]] = (1.1, 1.25, 1.5, 2.0)
"""How much stricter each scenario makes a rule's thresholds."""

THRESHOLDS: Final[Mapping[str, tuple[tuple[str, bool], ...]]] = {
    # detector -> (parameter, True if a higher value is stricter)
    "budget": (("max_cost_usd", True), ("max_actions", True)),
    "cost_drift": (("false_alarms_per_agent_day", False),),
    "cost_spike": (("false_alarms_per_agent_day", False),),
    "failure_rate": (
        ("false_alarms_per_agent_day", False),
        ("denial_threshold", True),
        ("spread_threshold", True),
    ),
    "fleet_outlier": (("z_threshold", True), ("score_threshold", True)),
    "mix_shift": (("false_alarms_per_agent_day", False),),
    "novelty": (("false_alarms_per_agent_day", False),),
    "runaway_loop": (("false_alarms_per_agent_day", False), ("min_run", True)),
    "sequence": (("max_probability", False),),
}
"""The parameters a what-if scales, per detector; detectors not listed (``policy``) have no
threshold to raise."""


def _defaults(detector: str) -> dict[str, Any]:
    cls = DETECTORS[detector]
    return {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def scaled_rule(rule: Rule, factor: float) -> Rule | None:
    """``rule`` with its thresholds ``factor`` times stricter, renamed ``<alert>__x<pct>``;
    ``None`` when it has none to scale (or all are unset or zero)."""
    defaults = _defaults(rule.detector)
    params = dict(rule.params)
    changed = False
    for name, higher_stricter in THRESHOLDS.get(rule.detector, ()):
        value = params.get(name, defaults.get(name))
        if not isinstance(value, int | float) or isinstance(value, bool) or value == 0:
            continue
        scaled = value * factor if higher_stricter else value / factor
        params[name] = round(scaled) if isinstance(value, int) else scaled
        changed = True
    if not changed:
        return None
    alert = f"{rule.alert}__x{round(factor * 100)}"
    return rule.model_copy(update={"alert": alert, "params": params})


@dataclass(frozen=True)
class Scenario:
    """One rule made ``factor`` times stricter: the backtest's figures with it."""

    rule: str
    factor: float
    anomalies: int
    """The rule's anomalies in this scenario (the original rule's: see :attr:`WhatIf`)."""
    evaluation: Evaluation | None


@dataclass(frozen=True)
class WhatIf:
    """Every scenario of a backtest, and the original figures per rule."""

    base: Evaluation | None
    base_anomalies: Mapping[str, int]
    scenarios: tuple[Scenario, ...]
    factors: tuple[float, ...]

    def for_rule(self, rule: str) -> list[Scenario]:
        """The scenarios of one rule, by factor."""
        return [s for s in self.scenarios if s.rule == rule]


def run_whatif(
    events_path: str | Path,
    rules: RuleSet,
    anomalies: Sequence[Anomaly],
    labels: Sequence[Label],
    summary: FleetSummary,
    *,
    factors: Sequence[float] = FACTORS,
) -> WhatIf:
    """Replay ``events_path`` once with stricter copies of every rule; score each scenario.

    ``anomalies`` are the original backtest's; with ``labels`` each scenario is evaluated
    (recall, false episodes, time to detect), without them only anomalies are counted.
    """
    copies: list[Rule] = []
    origin: dict[str, tuple[str, float]] = {}
    for rule in rules:
        for factor in factors:
            copy = scaled_rule(rule, factor)
            if copy is not None:
                copies.append(copy)
                origin[copy.alert] = (rule.alert, factor)
    stricter = run_backtest(events_path, RuleSet(rules=tuple(copies), source=rules.source))
    by_copy: dict[str, list[Anomaly]] = {alert: [] for alert in origin}
    for anomaly in stricter.anomalies:
        if anomaly.rule in by_copy:
            by_copy[anomaly.rule].append(anomaly)
    base = evaluate(anomalies, labels, summary) if labels else None
    base_counts = {rule.alert: sum(a.rule == rule.alert for a in anomalies) for rule in rules}
    scenarios: list[Scenario] = []
    for alert, found in by_copy.items():
        rule, factor = origin[alert]
        mixed = [a for a in anomalies if a.rule != rule]
        mixed += [a.model_copy(update={"rule": rule}) for a in found]
        ev = evaluate(mixed, labels, summary) if labels else None
        scenarios.append(Scenario(rule=rule, factor=factor, anomalies=len(found), evaluation=ev))
    return WhatIf(
        base=base,
        base_anomalies=base_counts,
        scenarios=tuple(scenarios),
        factors=tuple(factors),
    )
