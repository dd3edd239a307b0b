"""``agentwatch bench --sdk``: the SDK's cost per call in the agent's thread, no broker."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from agentwatch.cli import app


def test_bench_sdk_prints_check_and_emit_percentiles_in_microseconds() -> None:
    done = CliRunner().invoke(app, ["bench", "--sdk", "--events", "3000"])
    assert done.exit_code == 0, done.output
    result = json.loads(done.output.strip().splitlines()[-1])
    assert result["sdk_calls"] == 3000
    for name in ("check", "emit", "check_emit"):
        p50, p99 = result[f"{name}_p50_us"], result[f"{name}_p99_us"]
        assert 0 < p50 <= p99 < 10_000  # microseconds, not seconds or nanoseconds
    # checking is a dictionary look-up; building, validating and encoding an event is not
    assert result["check_p50_us"] < result["emit_p50_us"] <= result["check_emit_p50_us"] * 1.5
    # every timed event reached the (acknowledging) producer: none refused or dropped
    assert result["events_sent"] == 2 * (3000 + 2000) + 1
    assert 200 < result["event_bytes"] < 400


def test_bench_takes_json_like_every_command_that_prints_data() -> None:
    done = CliRunner().invoke(app, ["bench", "--sdk", "--events", "500", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.strip().splitlines()[-1])["sdk_calls"] == 500
