"""Backtesting worlds: one world end to end, cached traces, the tables, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.backtest import run_backtest
from agentwatch.lab.evaluation import Targets, incident_agents
from agentwatch.lab.labels import load_labels
from agentwatch.lab.matrix.run import format_tables, run_world, runs_to_json, select_worlds
from agentwatch.lab.matrix.seal import WORLDS_DIR
from agentwatch.lab.sim import Simulation, load_world, write_jsonl

TINY = """
name: tiny
seed: 11
minutes: 90
warmup_minutes: 30
error_bursts_per_hour: 0
fleets: [{name: support, agents: 10}, {name: ops, agents: 6}]
benign_changes: [{kind: model_upgrade, fleet: ops, at_minute: 45}]
incidents:
  - {kind: unapproved_high_risk, intensity: 1.0}
  - {kind: runaway_loop, intensity: 1.0}
  - {kind: cost_drift, ramp_minutes: 30, final_factor: 4.0}
"""


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(TINY, encoding="utf-8")
    return path


def test_one_world_scores_like_a_file_backtest_and_caches_its_trace(
    tiny: Path, tmp_path: Path
) -> None:
    world = load_world(tiny)
    rules = load_rules()
    traces = tmp_path / "traces"
    run = run_world(world, rules, traces=traces)
    assert run.generate_seconds is not None and run.events > 5000
    # the same figures as simulate + backtest FILE + evaluate
    write_jsonl(Simulation(world.config), tmp_path / "e.jsonl", tmp_path / "l.jsonl")
    labels = load_labels(tmp_path / "l.jsonl")
    result = run_backtest(tmp_path / "e.jsonl", rules, track=incident_agents(labels))
    direct = result.score(labels)
    counted = [r.events_to_detect for r in direct.incidents if r.detected]
    assert counted and all(n is not None and n >= 1 for n in counted)
    windows = [(r.window_events, r.window_failed) for r in direct.incidents]
    assert all(n is not None and f is not None and n >= 1 and 0 <= f <= n for n, f in windows)
    # when each incident's evidence began (a cost ramp's first costed call; the first event
    # of a loop or an unapproved action), inside its window
    for r in direct.incidents:
        assert r.first_evidence_s is not None and 0.0 <= r.first_evidence_s <= r.end - r.start
    [ramp] = [r for r in direct.incidents if r.kind == "cost_drift"]
    costed = result.tracked_costed[ramp.agent_id]
    assert costed and set(costed) <= set(result.tracked[ramp.agent_id])
    assert min(t for t in costed if t >= ramp.start) - ramp.start == ramp.first_evidence_s
    assert set(result.tracked_egress) == set(result.tracked)  # every tracked agent, listed
    assert run.evaluation.to_dict() == direct.to_dict()
    assert run.evaluation.kind("unapproved_high_risk").detected == 1  # type: ignore[union-attr]
    assert len(run.evaluation.fast_ramps) == 1
    # second run: the cached trace, unless the spec changed
    again = run_world(world, rules, traces=traces)
    assert again.generate_seconds is None and again.events == run.events
    tiny.write_text(TINY.replace("seed: 11", "seed: 12"), encoding="utf-8")
    changed = run_world(load_world(tiny), rules, traces=traces)
    assert changed.generate_seconds is not None


def test_tables_and_json(tiny: Path) -> None:
    run = run_world(load_world(tiny), load_rules())
    text = format_tables([run, run], Targets())
    for needle in ("tiny", "pooled", "false/100h", "ramps<=30m", "unapproved", "1/1"):
        assert needle in text, needle
    # the unapproved action's cell: caught, time to detect, (delay after its evidence), events
    unapproved = run.evaluation.kind("unapproved_high_risk")
    assert unapproved is not None and unapproved.median_after_evidence_s is not None
    ttd, after = unapproved.median_ttd_s, unapproved.median_after_evidence_s
    assert ttd is not None and f"1/1 {ttd:.0f}s ({after:.0f}s) " in text
    doc = json.loads(json.dumps(runs_to_json([run], Targets(), {"source": "x", "sha256": "y"})))
    [world] = doc["worlds"]
    assert world["name"] == "tiny" and world["incidents"] == 3
    assert world["kinds"]["unapproved_high_risk"]["detected"] == 1
    assert world["kinds"]["unapproved_high_risk"]["median_after_evidence_s"] == after
    assert doc["rules"] == {"source": "x", "sha256": "y"} and doc["targets"]["min_recall"] == 0.97
    assert doc["passed"] == all(c["ok"] for c in world["checks"])


def test_select_worlds(tiny: Path) -> None:
    assert [w.name for w in select_worlds(str(tiny))] == ["tiny"]
    assert [w.name for w in select_worlds(str(tiny.parent))] == ["tiny"]
    assert len(select_worlds("tuning")) == 12
    with pytest.raises(ValueError, match="not a half"):
        select_worlds("nowhere")


def test_cli_worlds_json_check_and_the_seal(tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(app, ["backtest", "--worlds", str(tiny), "--json"])
    assert ok.exit_code == 0, ok.output
    doc = json.loads(ok.stdout)
    assert doc["worlds"][0]["name"] == "tiny" and len(doc["rules"]["sha256"]) == 64
    lenient = tmp_path / "targets.yml"
    lenient.write_text("min_recall: 0\nmax_false_per_100_agent_hours: 1000\n"
                       "max_benign_change_episodes: 100\nmax_median_ttd_s: 100000\n"
                       "max_after_2x_s: 100000\n", encoding="utf-8")  # fmt: skip
    passed = runner.invoke(
        app, ["backtest", "--worlds", str(tiny), "--check", "--targets", str(lenient)]
    )
    assert passed.exit_code == 0, passed.output
    assert "tiny" in passed.stdout and "PASS" in passed.stdout
    strict = tmp_path / "strict.yml"
    strict.write_text("max_median_ttd_s: 0.001\n", encoding="utf-8")
    failed = runner.invoke(
        app, ["backtest", "--worlds", str(tiny), "--check", "--targets", str(strict)]
    )
    assert failed.exit_code == 1 and "failed targets" in failed.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text("min_recall: 2\n", encoding="utf-8")
    refused = runner.invoke(app, ["backtest", "--worlds", str(tiny), "--targets", str(bad)])
    assert refused.exit_code == 2 and "bad.yml: min_recall:" in refused.output
    sealed = runner.invoke(app, ["backtest", "--worlds", "sealed"])
    assert sealed.exit_code == 2 and "sealed" in sealed.output
    both = runner.invoke(app, ["backtest", "x.jsonl", "--worlds", "tuning"])
    assert both.exit_code == 2 and "replaces EVENTS" in both.output


def test_cli_simulate_world(tiny: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "w.jsonl"
    made = runner.invoke(app, ["simulate", "--world", str(tiny), "--out", str(out)])
    assert made.exit_code == 0, made.output
    again = tmp_path / "again.jsonl"
    runner.invoke(app, ["simulate", "--world", str(tiny), "--out", str(again)])
    assert out.read_bytes() == again.read_bytes()
    assert len(load_labels(tmp_path / "w.labels.jsonl")) >= 4
    mixed = runner.invoke(app, ["simulate", "--world", str(tiny), "--agents", "3", "--out", "x"])
    assert mixed.exit_code == 2 and "--agents: the world spec sets these" in mixed.output
    spec = sorted((WORLDS_DIR / "sealed").glob("*.yml"))[0]
    sealed = runner.invoke(
        app, ["simulate", "--world", str(spec), "--out", str(tmp_path / "s.jsonl")]
    )
    assert sealed.exit_code == 2 and "sealed" in sealed.output
    assert not (tmp_path / "s.jsonl").exists()
