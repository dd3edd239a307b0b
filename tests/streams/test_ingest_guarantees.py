"""Every record is counted exactly once or dead-lettered, whatever its size, key or partition.

End to end against the embedded broker: oversize records between valid events (the crash of
issue 11), key-less, wrongly partitioned and mismatched-key events over several partitions,
and a re-keyed event's second copy after a restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections import Counter
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.runner import running_app
from agentwatch.streams.stage import ORIGIN_HEADER, home_partition
from tests.streams.test_pipeline import event, read_topic, wait_for

pytestmark = pytest.mark.integration

Record = tuple[bytes | None, bytes, int | None]  # key, value, partition (None: partitioner)


async def send_records(
    settings: Settings,
    records: list[Record],
    headers: list[tuple[str, bytes]] | None = None,
    topic: str = "actions",
) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        for key, value, partition in records:
            await producer.send_and_wait(
                settings.topic(topic), value, key=key, partition=partition, headers=headers
            )
    finally:
        await producer.stop()


def valid(i: int, agent: str) -> bytes:
    return json.dumps(event(i, agent)).encode()


def counts(worker: WorkerApp) -> dict[str, int]:
    return {a: b.count for a, b in worker.stage.engine.baselines.items()}


def sample(worker: WorkerApp, name: str, **labels: str) -> float:
    return worker.metrics.registry.get_sample_value(name, labels) or 0.0


async def test_oversize_records_between_valid_events_are_dead_lettered(
    settings: Settings,
) -> None:
    # 1,000,100 and 1,048,000 bytes: over faust's old producer limit, under Kafka's default;
    # 2,000,000 bytes: over every configured limit, and the broker still hands it out.
    sizes = [1_000_100, 1_048_000, 2_000_000]
    junk = {size: random.Random(size).randbytes(size) for size in sizes}
    records: list[Record] = []
    n = 0
    for size in sizes:
        records += [(b"big", valid(n + i, "big"), None) for i in range(10)]
        records.append((b"big", junk[size], None))
        n += 10
    records += [(b"big", valid(n + i, "big"), None) for i in range(10)]
    worker = create_app(settings)
    async with running_app(worker):
        await send_records(settings, records)
        await wait_for(lambda: counts(worker).get("big") == 40, timeout=30)
        dead = await read_topic(settings, "deadletter", 3)
        assert worker.probes["ingest"].crashes == 0
        report = worker.readiness.check() if worker.readiness else None
    assert report is not None and report.stages["ingest"]["crashes"] == 0
    assert len(dead) == 3
    by_length = {int(dict(r.headers)["agentwatch.value.length"]): r for r in dead}
    assert sorted(by_length) == sizes
    for size, record in by_length.items():
        headers = dict(record.headers)
        assert headers["agentwatch.reason"] == b"too_large"
        assert headers["agentwatch.value.sha256"].decode() == hashlib.sha256(junk[size]).hexdigest()
        assert headers["agentwatch.value.truncated"] == b"true"
        assert record.value == junk[size][: settings.deadletter_max_bytes]
        assert record.key == b"big"
        assert headers["agentwatch.source.topic"] == settings.topic("actions").encode()
        assert b"bytes > limit" in headers["agentwatch.detail"]
    assert sample(worker, "agentwatch_deadletters_total", reason="too_large") == 3.0
    assert sample(worker, "agentwatch_deadletter_send_failures_total") == 0.0


async def test_every_event_is_counted_once_or_dead_lettered_across_partitions(
    settings: Settings,
) -> None:
    partitions = settings.topic_partitions
    assert partitions >= 4
    agents = [f"agent-{i}" for i in range(12)]
    rng = random.Random(11)
    records: list[Record] = []
    sent: Counter[str] = Counter()
    bad = Counter[str]()
    kinds: Counter[str] = Counter()
    for i in range(600):
        agent = rng.choice(agents)
        value = valid(i, agent)
        home = home_partition(agent, partitions)
        roll = rng.random()
        if roll < 0.4:  # keyed, default partitioner: lands on its home partition
            records.append((agent.encode(), value, None))
            kinds["keyed"] += 1
        elif roll < 0.7:  # no key: lands on any partition
            records.append((None, value, rng.randrange(partitions)))
            kinds["no_key"] += 1
        elif roll < 0.85:  # keyed right, but another partitioner put it elsewhere
            records.append((agent.encode(), value, (home + 1 + rng.randrange(3)) % partitions))
            kinds["wrong_partition"] += 1
        elif roll < 0.95:  # a key that is not its agent: dead-lettered
            other = agents[(agents.index(agent) + 1) % len(agents)]
            records.append((other.encode(), value, None))
            bad["key_mismatch"] += 1
            continue
        else:  # not an event at all
            records.append((None, b'{"truncated": ', rng.randrange(partitions)))
            bad["bad_json"] += 1
            continue
        sent[agent] += 1
    worker = create_app(settings)
    async with running_app(worker):
        await send_records(settings, records)
        await wait_for(lambda: counts(worker) == dict(sent), timeout=40)
        dead = await read_topic(settings, "deadletter", sum(bad.values()), timeout=10)
        await wait_for(lambda: counts(worker) == dict(sent), timeout=2)
    assert counts(worker) == dict(sent)
    assert sum(sent.values()) == kinds.total()
    reasons = Counter(dict(r.headers)["agentwatch.reason"].decode() for r in dead)
    assert reasons == bad
    assert sample(worker, "agentwatch_events_rekeyed_total", reason="no_key") == kinds["no_key"]
    assert (
        sample(worker, "agentwatch_events_rekeyed_total", reason="wrong_partition")
        == kinds["wrong_partition"]
    )
    assert sample(worker, "agentwatch_duplicate_events_total") == 0.0
    ingested = sum(
        s.value
        for m in worker.metrics.registry.collect()
        for s in m.samples
        if s.name == "agentwatch_events_ingested_total"
    )
    assert ingested == kinds.total()


async def test_second_copy_of_a_rekeyed_event_is_dropped_even_after_a_restart(
    settings: Settings, tmp_path: Any
) -> None:
    """What a replay after a crash does: the key-less original is re-keyed a second time."""
    partitions = settings.topic_partitions
    home = home_partition("solo", partitions)
    origin_partition = (home + 1) % partitions
    first = create_app(settings.replace(data_dir=tmp_path / "w1"))
    async with running_app(first):
        await send_records(settings, [(None, valid(i, "solo"), origin_partition) for i in range(3)])
        await wait_for(lambda: counts(first).get("solo") == 3)
        copies = [
            r
            for r in await read_topic(settings, "actions", 6)
            if r.partition == home and dict(r.headers or ()).get(ORIGIN_HEADER)
        ]
        assert len(copies) == 3
        # a replayed original is re-keyed again: the same value and origin header
        again = copies[0]
        await send_records(
            settings,
            [(b"solo", again.value, home)],
            headers=[(ORIGIN_HEADER, dict(again.headers)[ORIGIN_HEADER])],
        )
        await wait_for(lambda: sample(first, "agentwatch_duplicate_events_total") == 1.0)
        assert counts(first)["solo"] == 3
    # A new worker has no memory of event ids; the origins stored with the state catch it.
    second = create_app(settings.replace(data_dir=tmp_path / "w2"))
    async with running_app(second):
        await send_records(
            settings,
            [(b"solo", copies[1].value, home)],
            headers=[(ORIGIN_HEADER, dict(copies[1].headers)[ORIGIN_HEADER])],
        )
        await send_records(settings, [(b"solo", valid(100, "solo"), None)])
        await wait_for(lambda: sample(second, "agentwatch_duplicate_events_total") == 1.0)
        await wait_for(lambda: second.stage.engine.baselines["solo"].count == 4)


async def test_ten_thousand_bad_records_are_dead_lettered_with_a_handful_of_log_lines(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentwatch.streams.deadletter")
    worker = create_app(settings)
    async with running_app(worker):
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            for i in range(10_000):
                await producer.send(settings.topic("actions"), b"{\n" * (1 + i % 3), key=b"x")
            await producer.flush()
        finally:
            await producer.stop()
        started = time.monotonic()
        await wait_for(
            lambda: sample(worker, "agentwatch_deadletters_total", reason="bad_json") == 10_000,
            timeout=60,
        )
        took = time.monotonic() - started
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    print(f"10,000 dead letters in {took:.1f}s, {len(lines)} log line(s)")
    assert 2 <= len(lines) <= 5  # the first record at once, then summaries (the last at stop)
    assert all("\n" not in line for line in lines)
    assert sum(int(line.split()[1]) for line in lines) == 10_000


async def test_an_event_whose_processing_raises_is_dead_lettered_and_ingest_goes_on(
    settings: Settings,
) -> None:
    worker = create_app(settings)
    engine = worker.stage.engine.engine  # in the worker's process (the settings fixture)
    process = engine.process

    def buggy(event: Any) -> Any:
        if event.event_id == "a1-3":
            raise ZeroDivisionError("a detector bug")
        return process(event)

    engine.process = buggy  # type: ignore[method-assign]
    async with running_app(worker):
        await send_records(settings, [(b"a1", valid(i, "a1"), None) for i in range(6)])
        await wait_for(lambda: counts(worker).get("a1") == 5)
        dead = await read_topic(settings, "deadletter", 1)
    (record,) = dead
    headers = dict(record.headers)
    assert headers["agentwatch.reason"] == b"processing_error"
    assert headers["agentwatch.detail"] == b"ZeroDivisionError: a detector bug"
    assert json.loads(record.value)["event_id"] == "a1-3"
    assert sample(worker, "agentwatch_processing_errors_total", stage="ingest") == 1.0
    assert worker.probes["ingest"].crashes == 0
