"""``agentwatch bench --baseline``: the same run with and without detection, side by side."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.lab.bench import combine_rounds, run_bench


@pytest.mark.integration
def test_bench_baseline_prints_both_runs_and_their_ratio_per_round() -> None:
    args = ["bench", "--events", "2000", "--agents", "80", "--rate", "200", "--latency-seconds",
            "1", "--store", "memory", "--baseline", "--rounds", "2"]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    result = json.loads(lines[-1])
    # progress: one line per round as it ends, on stderr
    progress = [line for line in lines if line.startswith("bench: round ")]
    assert [line.split(":")[1].strip() for line in progress] == ["round 1/2", "round 2/2"]
    assert all("no rules" in line and "(ratio " in line for line in progress)
    assert result["rules"] == "default" and result["events"] == 2000 and result["rounds"] == 2
    assert result["events_per_s"] > 0 and result["baseline_events_per_s"] > 0
    # each round's rules/no-rules pair ran back to back; the ratio is their median
    assert len(result["ratios"]) == 2 and all(r > 0 for r in result["ratios"])
    assert result["ratio"] == pytest.approx(sum(result["ratios"]) / 2, abs=0.001)
    assert len(result["cpu_ratios"]) == 2 and result["cpu_ratio"] > 0
    assert result["baseline_worker_cpu_us_per_event"] > 0
    # the detectors' state is what the default rules add to each agent's stored state
    assert result["baseline_bytes_per_agent"] < result["bytes_per_agent"]
    # CPU per event over the drain: the worker's process and the broker both did work
    assert result["worker_cpu_us_per_event"] > 0 and result["broker_cpu_us_per_event"] > 0
    # phase 2's load generator (its own process) sent every event, each stamped and timed
    assert result["latency_events"] == 200 and result["offered_actual"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    # where the tail comes from: phase 2's snapshot writes and full collections (a 1 s phase
    # may hold no commit); shares of events folded near a snapshot, as fractions
    assert result["snapshots"] >= 0 and result["gc_full_collections"] >= 0
    assert result["gc_full_max_ms"] >= 0.0
    for share in ("tail_near_snapshot", "all_near_snapshot"):
        assert 0.0 <= result[share] <= 1.0
        assert 0.0 <= result[f"baseline_{share}"] <= 1.0  # the run without rules: the same


def _run(
    eps: float, cpu: float, p99: float, size: float, engine: float | None = None
) -> dict[str, Any]:
    return {
        "rules": "default", "events": 10, "agents": 2, "store": "memory",
        "events_per_s": eps, "worker_cpu_us_per_event": cpu - (engine or 0.0),
        "engine_cpu_us_per_event": engine, "cpu_us_per_event": cpu,
        "broker_cpu_us_per_event": 5.0,
        "produce_events_per_s": 100.0, "offered_rate": 10.0, "offered_actual": 10.0,
        "latency_events": 10, "p50_ms": p99 / 2, "p99_ms": p99, "max_ms": p99 + 1,
        "rss_mb": 1.0, "bytes_per_agent": size, "max_bytes_per_agent": int(size) + 10,
    }  # fmt: skip


def test_one_round_gives_its_figures_and_its_ratios() -> None:
    result = combine_rounds([(_run(800.0, 500.0, 90.0, 990.0), _run(1000.0, 400.0, 80.0, 470.0))])
    assert result["events_per_s"] == 800.0 and result["p99_ms"] == 90.0
    assert "rounds" not in result and "ratios" not in result
    assert result["ratio"] == 0.8  # events/s with rules over without
    assert result["cpu_ratio"] == 0.8  # CPU per event without rules over with them
    assert result["baseline_events_per_s"] == 1000.0
    assert result["baseline_worker_cpu_us_per_event"] == 400.0
    assert result["baseline_bytes_per_agent"] == 470.0


def test_cpu_ratio_counts_the_engines_own_process() -> None:
    # the engine in a process of its own: 300 µs in the worker and 200 in the engine
    with_rules = _run(1000.0, 500.0, 90.0, 990.0, engine=200.0)
    result = combine_rounds([(with_rules, _run(1000.0, 400.0, 80.0, 470.0))])
    assert result["worker_cpu_us_per_event"] == 300.0 and result["cpu_us_per_event"] == 500.0
    assert result["ratio"] == 1.0  # as fast as without rules, on two cores
    assert result["cpu_ratio"] == 0.8  # and a fifth of the CPU is the rules', not 0 or less


def test_rounds_give_medians_and_the_median_of_each_rounds_ratio() -> None:
    # round 2 ran on a host twice as slow: both of its runs slowed down together
    runs = [
        (_run(800.0, 500.0, 90.0, 990.0), _run(1000.0, 400.0, 80.0, 470.0)),
        (_run(400.0, 1000.0, 900.0, 992.0), _run(560.0, 700.0, 700.0, 470.0)),
        (_run(780.0, 520.0, 95.0, 994.0), _run(1000.0, 400.0, 85.0, 470.0)),
    ]
    result = combine_rounds(runs)
    assert result["rounds"] == 3
    assert result["ratios"] == [0.8, 0.714, 0.78] and result["ratio"] == 0.78
    assert result["cpu_ratios"] == [0.8, 0.7, 0.769] and result["cpu_ratio"] == 0.769
    assert result["events_per_s"] == 780.0 and result["baseline_events_per_s"] == 1000.0
    assert result["p99_ms"] == 95.0 and result["bytes_per_agent"] == 992.0
    assert result["max_bytes_per_agent"] == 1004  # the largest of any round


def test_rounds_without_a_baseline_give_medians_only() -> None:
    result = combine_rounds([(_run(800.0, 500.0, 90.0, 990.0), None)] * 2)
    assert result["rounds"] == 2 and result["events_per_s"] == 800.0
    assert "ratio" not in result and "baseline_events_per_s" not in result


def test_rounds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="rounds must be at least 1"):
        run_bench(rounds=0)


@pytest.mark.integration
def test_halt_trials_time_each_runaway_from_its_offending_event_to_its_halt() -> None:
    done = CliRunner().invoke(app, ["bench", "--halt-trials", "3", "--json"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output.strip().splitlines()[-1])
    assert result["halt_trials"] == 3
    assert 0 < result["halt_min_ms"] <= result["halt_p50_ms"] <= result["halt_max_ms"]
    # the halt's hops (detection, responder, control topic, the SDK's apply) add up to it
    for hop in ("detect", "respond", "deliver", "act"):
        assert result[f"{hop}_p50_ms"] >= 0
