"""The worker's Kafka transport: an offset commit waits for the ingest batch in progress, and
the producer flush (run by faust before every commit) waits for every acknowledgement and
a commit refuses to go past a record that failed; events faust drops from the agents' buffers
when a recovery ends are read again, even on a partition with no committed offset."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from faust.transport.producer import ProducerBuffer

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.produce import Outgoing
from agentwatch.streams.runner import running_app
from agentwatch.streams.stage import decode_state, home_partition
from agentwatch.streams.transport import (
    AckedFlushProducer,
    UnacknowledgedRecordError,
    _Consumer,
    _ConsumerThread,
)
from tests.streams.test_pipeline import encoded, event, produce, wait_for
from tests.streams.test_response import risky, rules_file

pytestmark = pytest.mark.integration

HELD = b"held"
FAILED = b"failed"


@pytest.fixture
def faulty_buffer(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """faust's producer buffer holds records valued ``HELD`` until the returned event is set,
    and fails records valued ``FAILED`` (as a send the broker never acknowledged)."""
    release = asyncio.Event()
    send_pending = ProducerBuffer._send_pending

    async def faulty(self: Any, fut: Any) -> None:
        if fut.message.value == HELD:
            await release.wait()
        elif fut.message.value == FAILED:
            fut.set_exception(KafkaTimeoutError())
            return
        await send_pending(self, fut)

    monkeypatch.setattr(ProducerBuffer, "_send_pending", faulty)
    return release


async def test_flush_waits_until_the_broker_acknowledged_every_record(
    settings: Settings, faulty_buffer: asyncio.Event
) -> None:
    # no commit of the worker's own while the test holds the buffer
    worker = create_app(settings.replace(commit_interval_s=60.0))
    async with running_app(worker):
        producer = worker.app.producer
        assert isinstance(producer, AckedFlushProducer)
        audit = worker.topics["audit"]
        first = audit.send_soon(key=b"k", value=b"sent")
        held = audit.send_soon(key=b"k", value=HELD)
        flush = asyncio.create_task(producer.flush())
        await asyncio.sleep(1.0)
        # faust's own flush returns here: the held record is in flight, not in its queue
        assert not flush.done(), "flush returned before the held record was acknowledged"
        assert producer.unacknowledged >= 1
        faulty_buffer.set()
        await asyncio.wait_for(flush, timeout=10)
        assert held.done() and held.result().offset >= 0
        assert first.done() and first.result().offset < held.result().offset
        assert producer.unacknowledged == 0


async def test_a_failed_record_stops_the_worker_without_committing(
    settings: Settings, faulty_buffer: asyncio.Event
) -> None:
    worker = create_app(settings.replace(commit_interval_s=60.0))
    async with running_app(worker):
        producer = worker.app.producer
        failed = worker.topics["audit"].send_soon(key=b"k", value=FAILED)
        await asyncio.wait_for(producer.flush(), timeout=10)
        assert isinstance(failed.exception(), KafkaTimeoutError)
        problem = producer.problem()
        assert isinstance(problem, UnacknowledgedRecordError)
        assert "audit" in str(problem) and "KafkaTimeoutError" in str(problem)
        # an event whose offset the next commit would cover
        await produce(settings, [encoded(event(0, "c-1"))])
        await wait_for(lambda: "c-1" in worker.stage.engine.baselines, timeout=30)
        await asyncio.sleep(1.0)  # acked once the agent asks for its next batch
        assert await worker.app.consumer.commit() is False
        assert worker.app.crashed
        committed = await group_offsets(settings)
        assert committed == {}, f"offsets committed past a failed record: {committed}"


async def test_a_flush_racing_the_producers_stop_refuses_the_commit_without_raising(
    settings: Settings, faulty_buffer: asyncio.Event
) -> None:
    """faust's buffer raises ``Cannot flush: Producer not Running`` when it is stopping with
    records still queued; the flush before a commit must report them unsent, not crash."""
    worker = create_app(settings.replace(commit_interval_s=60.0))
    async with running_app(worker):
        producer = worker.app.producer
        audit = worker.topics["audit"]
        audit.send_soon(key=b"k", value=HELD)  # in flight: the buffer's sender waits on it
        queued = [audit.send_soon(key=b"k", value=b"queued") for _ in range(3)]
        await asyncio.sleep(0.2)
        assert producer.buffer.size >= 3, "the records behind the held one are queued"
        producer.buffer._stopped.set()  # the buffer is stopping (as in a worker's shutdown)
        try:
            await asyncio.wait_for(producer.flush(), timeout=10)
            problem = producer.problem()
            assert isinstance(problem, UnacknowledgedRecordError)
            assert "never sent" in str(problem)
            assert not any(fut.done() for fut in queued)
        finally:
            producer.buffer._stopped.clear()
            faulty_buffer.set()
        await asyncio.wait_for(producer.flush(), timeout=10)
        assert all(fut.done() and fut.result().offset >= 0 for fut in queued)
        assert producer.problem() is None


async def test_events_dropped_when_a_recovery_ends_are_read_again_with_no_committed_offset(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow first batch (a slow RocksDB open, a long GC) still running when faust ends a
    table recovery: faust clears the agents' buffers then and seeks to the committed offsets
    to read them again, which on a partition with none (here: no event of it was folded before
    the restart) left the buffered events unread and a later one folded (its offset stored
    with the state: the replay guard would skip them for good)."""
    agent, events = "slow-start-1", 30
    home = home_partition(agent, settings.topic_partitions)
    earlier = next(
        a
        for a in (f"earlier-{i}" for i in range(100))
        if home_partition(a, settings.topic_partitions) != home
    )
    # before the restart: a state in the changelog (the restart recovers it), a committed
    # offset on another partition, none on the agent's
    async with running_app(create_app(settings)):
        await produce(settings, [encoded(event(0, earlier))])
        deadline = time.monotonic() + 20
        while not await group_offsets(settings) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
    assert list(await group_offsets(settings)) == [
        home_partition(earlier, settings.topic_partitions)
    ]
    await produce(settings, [encoded(event(i, agent)) for i in range(events)])

    worker = create_app(settings.replace(batch_max=5))  # the rest waits in the agent's buffer
    stage = worker.stage
    first_batch, seek_done = asyncio.Event(), asyncio.Event()
    overlapped: list[bool] = []
    process_batch = stage.process_batch
    seek_to_committed = _ConsumerThread.seek_to_committed

    async def slow_first_batch(batch: Sequence[Any], done: Any = None) -> None:
        if not first_batch.is_set():
            first_batch.set()
            await asyncio.wait_for(seek_done.wait(), timeout=30)
            await asyncio.sleep(0.5)  # faust resumes the flow: the agents' buffers are cleared
        await process_batch(batch, done)

    async def slow_offset_fetch(self: Any) -> Mapping[Any, int]:
        if seek_done.is_set():
            return await seek_to_committed(self)
        try:
            # the committed offsets fetched once (aiokafka's fetcher waits for them), faust's
            # answer comes once the first batch is being folded
            await seek_to_committed(self)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(first_batch.wait(), timeout=10)
            overlapped.append(first_batch.is_set())
            await asyncio.sleep(0.2)  # the rest of the backlog reaches the agent's buffer
            return await seek_to_committed(self)
        finally:
            seek_done.set()

    monkeypatch.setattr(stage, "process_batch", slow_first_batch)
    monkeypatch.setattr(_ConsumerThread, "seek_to_committed", slow_offset_fetch)
    async with running_app(worker):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            baseline = stage.engine.baselines.get(agent)
            counted = None if baseline is None else baseline.count
            if counted == events:
                break
            await asyncio.sleep(0.1)
        assert overlapped == [True], "the first batch did not overlap the end of the recovery"
        assert counted == events, f"{counted} of {events} events folded"
        deadline = time.monotonic() + 10
        while (committed := await group_offsets(settings)).get(home) != events:
            assert time.monotonic() < deadline, f"committed: {committed}"
            await asyncio.sleep(0.2)


async def group_offsets(settings: Settings) -> dict[int, int]:
    """The offsets the worker's group committed on the actions topic, by partition."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,  # only reads the group's offsets, never joins
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        out = {}
        for partition in range(settings.topic_partitions):
            tp = TopicPartition(settings.topic("actions"), partition)
            offset = await consumer.committed(tp)
            if offset is not None:
                out[partition] = offset
        return out
    finally:
        await consumer.stop()


async def test_a_commit_stores_no_event_whose_anomaly_is_not_acknowledged(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = create_app(settings.replace(rules_file=rules_file(tmp_path)))
    stage = worker.stage
    release = asyncio.Event()
    publish = stage._publish

    async def slow_anomalies(topic: Any, purpose: str, records: Sequence[Outgoing]) -> None:
        if purpose == "anomaly":
            await release.wait()  # the broker has not acknowledged the anomaly yet
        await publish(topic, purpose, records)

    monkeypatch.setattr(stage, "_publish", slow_anomalies)
    async with running_app(worker):
        await produce(settings, [risky(0, "slow-1")])
        try:
            await wait_for(lambda: "slow-1" in stage.engine.baselines, timeout=30)
            await asyncio.sleep(1.5)  # three commit intervals
            # stored now, a kill would skip the event when read again: its anomaly never out
            stored_early = worker.table.get(b"slow-1")
        finally:
            release.set()  # the worker can stop
        assert stored_early is None, "a commit stored an event whose anomaly was not acked"
        await wait_for(lambda: worker.table.get(b"slow-1") is not None, timeout=10)
        _, baseline, _ = decode_state(worker.table.get(b"slow-1"))
        assert baseline.count == 1


async def test_a_commit_whose_snapshot_was_cut_short_commits_nothing() -> None:
    """The stage was interrupted after the commit began (its snapshot not all written): the
    offsets chosen for it would run ahead of the stored state, so none is committed and the
    worker stops (the next start reads those events again)."""
    crashed: list[BaseException] = []

    class _Barrier:
        interrupted = "the state to write is lost (EngineProcessExited(...))"

    class _App:
        producer = None
        commit_barrier = _Barrier()
        should_stop = False

    class _Self:
        app = _App()

        async def crash(self, exc: BaseException) -> None:
            crashed.append(exc)

    assert await _Consumer._commit(_Self(), {"tp": 5}) is False  # type: ignore[arg-type]
    assert len(crashed) == 1 and isinstance(crashed[0], UnacknowledgedRecordError)
    assert "the state to write is lost" in str(crashed[0])
