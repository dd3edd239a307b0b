"""``backtest --compare A B``: gains, losses, false episodes removed and added."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.lab.compare import Comparison, format_comparison
from agentwatch.lab.evaluation import FleetSummary, evaluate
from agentwatch.lab.labels import Label
from agentwatch.rules import __file__ as rules_init
from agentwatch.schemas import Anomaly

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def anomaly(i: int, agent: str, at_s: float) -> Anomaly:
    values: dict[str, Any] = {
        "anomaly_id": f"a{i}",
        "ts": T0 + timedelta(seconds=at_s),
        "agent_id": agent,
        "detector": "d",
        "kind": "k",
        "severity": "error",
        "score": 2.0,
        "threshold": 1.0,
        "observed": 2.0,
        "baseline": 1.0,
        "summary": "s",
    }
    return Anomaly(**values)


def test_gains_losses_and_false_episodes() -> None:
    labels = [
        Label("inc-1", "runaway_loop", "a1", "f", T0, T0 + timedelta(minutes=5)),
        Label("inc-2", "error_storm", "a2", "f", T0, T0 + timedelta(minutes=5)),
    ]
    summary = FleetSummary(agents=10, start=T0.timestamp(), end=T0.timestamp() + 36000)
    a = evaluate(
        [anomaly(1, "a1", 30), anomaly(2, "a3", 5000), anomaly(3, "a4", 9000)], labels, summary
    )
    b = evaluate(
        [anomaly(4, "a2", 40), anomaly(5, "a3", 5100), anomaly(6, "a5", 100)], labels, summary
    )
    c = Comparison("w", a, b)
    assert (c.gained, c.lost) == (["inc-2"], ["inc-1"])
    assert (c.false_removed, c.false_added) == (1, 1)  # a4 gone, a5 new, a3 kept
    text = format_comparison([c], "A.yml", "B.yml")
    assert "A = A.yml" in text and "+1 -1" in text and "-1 +1" in text
    assert "w: +inc-2 -inc-1" in text
    assert json.loads(json.dumps(c.to_dict()))["gained"] == ["inc-2"]


def test_cli_compare_on_a_world(tmp_path: Path) -> None:
    spec = tmp_path / "w.yml"
    spec.write_text(
        "name: w\nseed: 3\nminutes: 60\nwarmup_minutes: 20\n"
        "fleets: [{name: support, agents: 12}]\n"
        "incidents: [{kind: unapproved_high_risk, intensity: 1.0}]\n",
        encoding="utf-8",
    )
    default = Path(rules_init).with_name("default.yml")
    doc = yaml.safe_load(default.read_text(encoding="utf-8"))
    for group in doc["groups"]:
        group["rules"] = [r for r in group["rules"] if r["detector"] != "policy"]
    without_policy = tmp_path / "b.yml"
    without_policy.write_text(yaml.safe_dump(doc), encoding="utf-8")
    runner = CliRunner()
    out = runner.invoke(
        app, ["backtest", "--worlds", str(spec), "--compare", str(default), str(without_policy)]
    )
    assert out.exit_code == 0, out.output
    assert "A = " in out.stdout and "b.yml" in out.stdout and "trace" in out.stdout
    js = runner.invoke(
        app,
        ["backtest", "--worlds", str(spec), "--json", "--compare", str(default), str(default)],
    )
    [same] = json.loads(js.stdout)["comparisons"]
    assert same["gained"] == same["lost"] == [] and same["a"] == same["b"]
    bad = runner.invoke(
        app, ["backtest", "--worlds", str(spec), "--rules", str(default), "--compare", "x", "y"]
    )
    assert bad.exit_code == 2
