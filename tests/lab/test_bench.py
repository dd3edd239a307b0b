"""``agentwatch bench --baseline``: the same run with and without detection, side by side."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agentwatch.cli import app

pytestmark = pytest.mark.integration


def test_bench_baseline_prints_both_runs_and_their_ratio() -> None:
    args = ["bench", "--events", "2000", "--agents", "80", "--rate", "200",
            "--latency-seconds", "1", "--store", "memory", "--baseline"]  # fmt: skip
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    result = json.loads(done.output.strip().splitlines()[-1])
    assert result["rules"] == "default" and result["events"] == 2000
    assert result["events_per_s"] > 0 and result["baseline_events_per_s"] > 0
    assert result["ratio"] == pytest.approx(
        result["events_per_s"] / result["baseline_events_per_s"], abs=0.001
    )
    # the detectors' state is what the default rules add to each agent's stored state
    assert result["baseline_bytes_per_agent"] < result["bytes_per_agent"]
    # CPU per event over the drain: the worker's process and the broker both did work
    assert result["worker_cpu_us_per_event"] > 0 and result["broker_cpu_us_per_event"] > 0
    # phase 2's load generator (its own process) sent every event, each stamped and timed
    assert result["latency_events"] == 200 and result["offered_actual"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
