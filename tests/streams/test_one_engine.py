"""One engine: the live worker and ``backtest`` turn the same events into the same anomalies."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.backtest import run_backtest
from agentwatch.lab.sim import SimConfig, Simulation, write_jsonl
from agentwatch.schemas import Anomaly
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("engine_process", ["off", "on"])
async def test_live_worker_and_backtest_produce_identical_anomalies(
    settings: Settings, tmp_path: Path, engine_process: str
) -> None:
    sim = Simulation(SimConfig(agents=30, minutes=45, seed=11))
    events_path = tmp_path / "events.jsonl"
    write_jsonl(sim, events_path, tmp_path / "labels.jsonl")
    offline = run_backtest(events_path, load_rules()).anomalies
    assert offline, "the scenario must produce anomalies for the comparison to mean anything"

    # One partition: the worker sees the file's order, as the backtest does.
    # The engine in the worker's process, or in one of its own (engine_process).
    live_settings = settings.replace(topic_partitions=1, engine_process=engine_process)
    worker = create_app(live_settings)
    lines = events_path.read_bytes().splitlines()
    async with running_app(worker):
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            for line in lines:
                agent = line.split(b'"agent_id":"', 1)[1].split(b'"', 1)[0]
                await producer.send(live_settings.topic("actions"), line, key=agent)
            await producer.flush()
        finally:
            await producer.stop()
        deadline = time.monotonic() + 120
        roster = worker.stage.engine.roster
        while sum(count for _, count in (await roster()).values()) < len(lines):
            assert time.monotonic() < deadline, "worker did not process every event"
            await asyncio.sleep(0.1)

    consumer = AIOKafkaConsumer(
        live_settings.topic("anomalies"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    live: list[Anomaly] = []
    try:
        deadline = time.monotonic() + 20
        while len(live) < len(offline) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                live.extend(Anomaly.model_validate_json(r.value) for r in records)
        await asyncio.sleep(0.5)  # anything beyond the offline count would show up here
        for records in (await consumer.getmany(timeout_ms=300)).values():
            live.extend(Anomaly.model_validate_json(r.value) for r in records)
    finally:
        await consumer.stop()
    assert [a.model_dump_json() for a in live] == [a.model_dump_json() for a in offline]
