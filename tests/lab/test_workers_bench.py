"""``agentwatch bench --workers N``: N worker processes share the partitions; where the CPU went."""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from agentwatch.cli import app
from agentwatch.lab.cpu import cpu_seconds, host_cpu


def test_cpu_seconds_grow_with_work_done() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(2_000_000))
    assert cpu_seconds(os.getpid()) > before
    busy, total = host_cpu()
    assert 0 < busy <= total


def test_more_workers_than_partitions_is_refused_in_one_line() -> None:
    done = CliRunner().invoke(app, ["bench", "--workers", "3", "--partitions", "2"])
    assert done.exit_code == 2
    assert "3 workers need --partitions >= 3" in done.output


@pytest.mark.integration
def test_two_workers_split_the_partitions_and_report_their_share_and_cpu() -> None:
    args = ["bench", "--workers", "2", "--events", "3000", "--agents", "60"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    result = json.loads(done.output.strip().splitlines()[-1])
    assert (result["workers"], result["partitions"], result["events"]) == (2, 8, 3000)
    shares = result["per_worker"]
    assert len(shares) == 2
    # one consumer group: every partition and every event exactly once, both workers busy
    assert sum(w["partitions"] for w in shares) == 8 and all(w["partitions"] for w in shares)
    assert sum(w["events"] for w in shares) == 3000 and all(w["events"] for w in shares)
    assert result["events_per_s"] > 0
    cpu = result["cpu_pct"]
    assert cpu["broker"] > 0 and cpu["producer"] > 0 and all(w["cpu_pct"] > 0 for w in shares)
    assert cpu["workers"] == pytest.approx(sum(w["cpu_pct"] for w in shares), abs=0.2)
    # each worker's engine runs in a process of its own on two cores (engine_process auto)
    if len(os.sched_getaffinity(0)) >= 2:
        assert all(w["engine_cpu_pct"] > 0 for w in shares) and cpu["engines"] > 0
    else:
        assert all(w["engine_cpu_pct"] is None for w in shares) and cpu["engines"] == 0
    parts = cpu["broker"] + cpu["producer"] + cpu["workers"] + cpu["engines"]
    assert cpu["total"] == pytest.approx(parts, abs=0.4)
