"""What-if figures come from re-running the rules with stricter thresholds."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.detectors.rules import RuleSet, load_rules
from agentwatch.lab.backtest import rules_fingerprint, run_backtest
from agentwatch.lab.evaluation import evaluate
from agentwatch.lab.report import render_report
from agentwatch.lab.sim import SimConfig, Simulation, write_jsonl
from agentwatch.lab.whatif import run_whatif, scaled_rule


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Simulation]:
    tmp = tmp_path_factory.mktemp("whatif")
    sim = Simulation(SimConfig(agents=30, minutes=60, seed=4))
    write_jsonl(sim, tmp / "e.jsonl", tmp / "l.jsonl")
    return tmp / "e.jsonl", sim


def test_scaled_rules() -> None:
    rules = load_rules()
    budget = scaled_rule(rules.by_alert("BudgetExceeded"), 2.0)
    assert budget is not None and budget.alert == "BudgetExceeded__x200"
    assert budget.params == {"max_actions": 1200, "window_s": 60}  # no spend limit to scale
    novelty = scaled_rule(rules.by_alert("NovelDestination"), 2.0)
    assert novelty is not None
    assert novelty.params["false_alarms_per_agent_day"] == pytest.approx(0.005)
    loop = scaled_rule(rules.by_alert("RunawayLoop"), 1.5)
    assert loop is not None and loop.params == {
        "false_alarms_per_agent_day": pytest.approx(0.01 / 1.5),
        "min_run": 8,
    }
    assert scaled_rule(rules.by_alert("UnapprovedHighRiskAction"), 2.0) is None  # policy
    assert scaled_rule(rules.by_alert("Exfiltration"), 2.0) is None  # max_probability 0


def test_a_rule_copy_alone_raises_what_the_rule_raised_among_all(
    trace: tuple[Path, Simulation],
) -> None:
    events, sim = trace
    rules = load_rules()
    base = run_backtest(events, rules)
    labels = sim.labels()
    same = run_whatif(events, rules, base.anomalies, labels, base.summary, factors=(1.0,))
    assert same.base is not None
    assert {s.rule for s in same.scenarios} >= {"RunawayLoop", "CostSpike", "FailureRate"}
    for s in same.scenarios:  # a copy at x1.0 reproduces the rule exactly
        assert s.anomalies == same.base_anomalies[s.rule], s.rule
        ev = s.evaluation
        assert ev is not None
        assert ev.false_episodes == same.base.false_episodes
        assert [r.ttd_s for r in ev.incidents] == [r.ttd_s for r in same.base.incidents]


def test_stricter_thresholds_never_add_anomalies_and_are_measured(
    trace: tuple[Path, Simulation],
) -> None:
    events, sim = trace
    rules = load_rules()
    base = run_backtest(events, rules)
    labels = sim.labels()
    whatif = run_whatif(events, rules, base.anomalies, labels, base.summary)
    assert whatif.factors == (1.1, 1.25, 1.5, 2.0)
    by_rule = {s.rule for s in whatif.scenarios}
    for rule in by_rule:
        counts = [s.anomalies for s in sorted(whatif.for_rule(rule), key=lambda s: s.factor)]
        assert len(counts) == 4
    # budget: twice the limits, on a 60-minute run, removes what it raised
    doubled = next(s for s in whatif.for_rule("BudgetExceeded") if s.factor == 2.0)
    assert doubled.anomalies <= whatif.base_anomalies["BudgetExceeded"]
    page = render_report(
        base.anomalies,
        labels,
        base.summary,
        evaluate(base.anomalies, labels, base.summary),
        whatif=whatif,
        rules=rules_fingerprint(None),
    )
    assert '<section id="whatif">' in page and "x2 stricter" in page
    assert rules_fingerprint(None)["sha256"] in page


def test_without_labels_only_anomalies_are_counted(trace: tuple[Path, Simulation]) -> None:
    events, _ = trace
    rules = RuleSet(rules=(load_rules().by_alert("RunawayLoop"),), source="x")
    base = run_backtest(events, rules)
    whatif = run_whatif(events, rules, base.anomalies, [], base.summary, factors=(2.0,))
    assert whatif.base is None and [s.evaluation for s in whatif.scenarios] == [None]
