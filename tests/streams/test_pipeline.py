"""End to end against the embedded broker: ingest, dead letters, baselines, web views."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app

pytestmark = pytest.mark.integration

T0 = datetime(2026, 5, 1, 9, 0, tzinfo=UTC)


def event(i: int, agent: str = "a1", **fields: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "event_id": f"{agent}-{i}",
        "ts": (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
        "agent_id": agent,
        "fleet": "support",
        "action": "search" if i % 3 else "send_email",
        "cost_usd": 0.01,
        "latency_ms": 20.0,
    }
    doc.update(fields)
    return doc


async def produce(
    settings: Settings, items: list[tuple[bytes | None, bytes]], *, batched: bool = False
) -> None:
    """Send ``items`` one at a time, or (``batched``) all before waiting for any, so that the
    producer's batches fill up."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, linger_ms=20 if batched else 0
    )
    await producer.start()
    try:
        if batched:
            sent = [await producer.send(settings.topic("actions"), v, key=k) for k, v in items]
            await asyncio.gather(*sent)
        else:
            for key, value in items:
                await producer.send_and_wait(settings.topic("actions"), value, key=key)
    finally:
        await producer.stop()


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def read_topic(settings: Settings, name: str, count: int, timeout: float = 10.0) -> list:
    consumer = AIOKafkaConsumer(
        settings.topic(name),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def encoded(doc: dict[str, object]) -> tuple[bytes, bytes]:
    return str(doc["agent_id"]).encode(), json.dumps(doc).encode()


async def test_events_fold_into_baseline_and_agent_view(
    settings: Settings, auth: dict[str, str]
) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        await produce(settings, [encoded(event(i)) for i in range(30)])
        stage = worker.stage
        await wait_for(
            lambda: "a1" in stage.engine.baselines and stage.engine.baselines["a1"].count == 30
        )
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(f"{worker.web_url}/agents/a1") as resp:
                assert resp.status == 200
                view = await resp.json()
            async with http.get(f"{worker.web_url}/agents/nobody") as resp:
                assert resp.status == 404
            async with http.get(f"{worker.web_url}/healthz") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "ok"
            async with http.get(f"{worker.web_url}/metrics") as resp:
                metrics = await resp.text()
    assert view["agent_id"] == "a1"
    assert view["events"] == 30
    assert view["cost_usd"] == pytest.approx(0.30)
    actions = {row["action"]: row["count"] for row in view["top_actions"]}
    assert actions == {"search": 20, "send_email": 10}
    assert (
        'agentwatch_events_ingested_total{fleet="support",kind="tool",status="ok"} 30.0' in metrics
    )
    assert "agent_id" not in metrics


async def test_malformed_events_go_to_deadletter_and_good_ones_flow(settings: Settings) -> None:
    bad_nan = json.dumps(event(2)).replace('"cost_usd": 0.01', '"cost_usd": NaN').encode()
    missing = event(3)
    del missing["action"]
    oversized = event(4, attributes={f"k{i}": "x" * 1100 for i in range(60)})
    items = [
        encoded(event(1)),
        (b"a1", b"{this is not json"),
        (b"a1", bad_nan),
        encoded(missing),
        encoded(oversized),
        (b"someone-else", json.dumps(event(5)).encode()),
        encoded(event(6)),
    ]
    worker = create_app(settings)
    async with running_app(worker):
        await produce(settings, items)
        await wait_for(
            lambda: (
                "a1" in worker.stage.engine.baselines
                and worker.stage.engine.baselines["a1"].count == 2
            )
        )
        dead = await read_topic(settings, "deadletter", 5)
    reasons = sorted(dict(r.headers)["agentwatch.reason"].decode() for r in dead)
    assert reasons == ["bad_json", "invalid", "invalid", "key_mismatch", "too_large"]
    details = " ".join(dict(r.headers)["agentwatch.detail"].decode() for r in dead)
    assert "cost_usd" in details and "action" in details
    # the raw bytes are kept exactly, and the source position is recorded
    assert b"{this is not json" in [r.value for r in dead]
    assert all(
        dict(r.headers)["agentwatch.source.topic"] == settings.topic("actions").encode()
        for r in dead
    )
    text = worker.metrics.registry.get_sample_value(
        "agentwatch_deadletters_total", {"reason": "invalid"}
    )
    assert text == 2.0


async def test_duplicate_event_ids_are_counted_once(settings: Settings) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        items = [encoded(event(i)) for i in range(5)] + [encoded(event(2)), encoded(event(6))]
        await produce(settings, items)
        await wait_for(
            lambda: (
                worker.stage.engine.baselines.get("a1") is not None
                and worker.stage.engine.baselines["a1"].count == 6
            )
        )
        await asyncio.sleep(0.3)
        assert worker.stage.engine.baselines["a1"].count == 6
        assert worker.metrics.registry.get_sample_value("agentwatch_duplicate_events_total") == 1.0


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_restart_recovers_baselines_from_changelog(
    settings: Settings, tmp_path, store: str
) -> None:
    first = settings.replace(store=store, data_dir=tmp_path / "w1")
    worker = create_app(first)
    async with running_app(worker):
        await produce(settings, [encoded(event(i, agent=f"r{i % 3}")) for i in range(60)])
        await wait_for(lambda: sum(b.count for b in worker.stage.engine.baselines.values()) == 60)
        before = {a: b.to_bytes() for a, b in worker.stage.engine.baselines.items()}
    # A new worker with an empty local store must rebuild the table from its changelog.
    second = settings.replace(store=store, data_dir=tmp_path / "w2")
    restarted = create_app(second)
    async with running_app(restarted):
        recovered = {a: await restarted.stage.baseline(a) for a in before}
        assert all(b is not None for b in recovered.values())
        assert {a: b.to_bytes() for a, b in recovered.items() if b} == before
        # and it keeps counting from there, without re-counting the old events
        await produce(settings, [encoded(event(100, agent="r0"))])
        await wait_for(
            lambda: (
                restarted.stage.engine.baselines.get("r0") is not None
                and restarted.stage.engine.baselines["r0"].count == 21
            )
        )


async def test_a_changelog_written_in_batches_is_recovered_to_its_last_record(
    settings: Settings, tmp_path
) -> None:
    """Commits write hundreds of agents' state at once, so the changelog goes in batches of
    many records; a worker on an empty disk recovers every agent's last one (the embedded
    broker's ``ListOffsets`` would stop it at the last batch's first record)."""
    agents = [f"b{n}" for n in range(240)]
    first = settings.replace(data_dir=tmp_path / "w1")
    worker = create_app(first)
    worker.app.conf.producer_linger = 0.05  # the changelog's last batches hold many records
    async with running_app(worker):
        for round_ in range(3):  # three commits' worth, each writing every agent again
            await produce(
                settings,
                [encoded(event(round_ * 10 + i, agent=a)) for a in agents for i in (0, 1)],
                batched=True,
            )
            await wait_for(
                lambda r=round_: (
                    sum(b.count for b in worker.stage.engine.baselines.values())
                    == 2 * len(agents) * (r + 1)
                ),
                timeout=60,
            )
            await asyncio.sleep(3 * settings.commit_interval_s)  # the commit writes them
        before = {a: b.to_bytes() for a, b in worker.stage.engine.baselines.items()}
    second = settings.replace(data_dir=tmp_path / "w2")
    restarted = create_app(second)
    async with running_app(restarted):
        recovered = {a: await restarted.stage.baseline(a) for a in agents}
        assert sorted(a for a, b in recovered.items() if b is None) == []
        assert {a: b.to_bytes() for a, b in recovered.items() if b} == before
