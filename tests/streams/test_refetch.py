"""The refetch guard on hand-built fetch responses, read by aiokafka's own ``PartitionRecords``.

The live case (two producers on one partition of the embedded broker) is
``tests/streams/test_ingest_guarantees.py``'s multi-partition test.
"""

from __future__ import annotations

import struct

import pytest
from aiokafka.consumer import fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBase, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition
from prometheus_client import generate_latest

from agentwatch.streams import refetch
from agentwatch.streams.metrics import WorkerMetrics

TOPIC = "aw.actions"
TP = TopicPartition(TOPIC, 1)


def _batch(base: int, count: int, *, control: bool = False) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=int(control),
        producer_id=7 if control else -1,
        producer_epoch=0 if control else -1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for i in range(count):
        key = struct.pack(">hh", 0, 1) if control else f"k{base + i}".encode()
        builder.append(i, timestamp=1_000, key=key, value=b"v", headers=[])
    data = bytearray(builder.build())
    struct.pack_into(">q", data, 0, base)  # the broker sets the base offset; not in the CRC
    if control:
        attributes = DefaultRecordBase.ATTRIBUTES_OFFSET
        struct.pack_into(">h", data, attributes, data[attributes + 1] | 0x20)
        crc = calc_crc32c(bytes(data[attributes:]))
        struct.pack_into(">I", data, DefaultRecordBase.CRC_OFFSET, crc)
    return bytes(data)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def guard(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> refetch.RefetchGuard:
    guard = refetch.RefetchGuard(max_wait_s=3.0, clock=clock)
    guard.watch([TOPIC])
    monkeypatch.setattr(refetch, "GUARD", guard)
    monkeypatch.setattr(aiokafka_fetcher, "PartitionRecords", aiokafka_fetcher.PartitionRecords)
    refetch.install()
    return guard


def _fetch(tp: TopicPartition, offset: int, *batches: bytes) -> tuple[list[int], int]:
    """Read a response as aiokafka's fetcher does: the offsets delivered, the next fetch offset."""
    records = aiokafka_fetcher.PartitionRecords(
        tp, MemoryRecords(b"".join(batches)), [], offset, None, None, True, 0
    )
    offsets = [record.offset for record in records]
    return offsets, records.next_fetch_offset


def test_install_replaces_aiokafkas_partition_records_once(guard: refetch.RefetchGuard) -> None:
    installed = aiokafka_fetcher.PartitionRecords
    refetch.install()
    assert installed is aiokafka_fetcher.PartitionRecords
    assert issubclass(installed, refetch._GuardedPartitionRecords)


def test_contiguous_batches_are_read_whole(guard: refetch.RefetchGuard) -> None:
    assert _fetch(TP, 10, _batch(10, 3), _batch(13, 2)) == ([10, 11, 12, 13, 14], 15)
    assert guard.refetches == 0


def test_a_batch_holding_the_fetch_offset_from_before_it_is_read_from_that_offset(
    guard: refetch.RefetchGuard,
) -> None:
    assert _fetch(TP, 12, _batch(10, 4)) == ([12, 13], 14)
    assert guard.refetches == 0


def test_a_first_batch_past_the_fetch_offset_is_not_read_and_the_offset_fetched_again(
    guard: refetch.RefetchGuard, clock: Clock
) -> None:
    assert _fetch(TP, 178, _batch(179, 2)) == ([], 178)  # unguarded aiokafka: [179, 180], 181
    clock.now += 0.01
    assert _fetch(TP, 178, _batch(178, 3)) == ([178, 179, 180], 181)  # it arrived
    assert guard.refetches == 1 and guard.accepted == 0
    assert not guard._held


def test_a_hole_inside_a_response_ends_the_read_before_it(guard: refetch.RefetchGuard) -> None:
    assert _fetch(TP, 20, _batch(20, 2), _batch(23, 2)) == ([20, 21], 22)
    assert _fetch(TP, 22, _batch(22, 3)) == ([22, 23, 24], 25)


def test_control_batches_take_their_offsets_and_are_no_hole(guard: refetch.RefetchGuard) -> None:
    assert _fetch(TP, 5, _batch(5, 2), _batch(7, 1, control=True), _batch(8, 1)) == (
        [5, 6, 8],
        9,
    )
    assert guard.refetches == 0


def test_a_hole_still_there_after_max_wait_is_accepted_and_logged(
    guard: refetch.RefetchGuard, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(5):
        assert _fetch(TP, 40, _batch(42, 1)) == ([], 40)
        clock.now += 0.5
    assert guard.refetches == 5 and not caplog.records
    clock.now += 1.0  # 3.5 s after the first
    assert _fetch(TP, 40, _batch(42, 1)) == ([42], 43)
    assert guard.accepted == 1
    (warning,) = [r for r in caplog.records if r.name == "agentwatch.streams.refetch"]
    assert warning.levelname == "WARNING"
    assert warning.getMessage() == (
        "offsets 40 to 41 of aw.actions partition 1 still missing after 6 fetches in 3.5 s;"
        " reading on from 42"
    )


def test_holes_are_held_per_partition(guard: refetch.RefetchGuard, clock: Clock) -> None:
    other = TopicPartition(TOPIC, 2)
    assert _fetch(TP, 40, _batch(41, 1)) == ([], 40)
    clock.now += 2.0
    assert _fetch(other, 40, _batch(41, 1)) == ([], 40)  # its own hole, first seen now
    clock.now += 1.5
    assert _fetch(TP, 40, _batch(41, 1)) == ([41], 42)  # 3.5 s: accepted
    assert _fetch(other, 40, _batch(41, 1)) == ([], 40)  # 1.5 s: fetched again


def test_unguarded_topics_keep_aiokafkas_reading(guard: refetch.RefetchGuard) -> None:
    changelog = TopicPartition("aw-baselines-changelog", 0)  # compacted: holes are legitimate
    assert _fetch(changelog, 178, _batch(179, 2)) == ([179, 180], 181)
    assert guard.refetches == 0


def test_held_holes_of_a_consumer_that_moved_on_are_forgotten(clock: Clock) -> None:
    guard = refetch.RefetchGuard(clock=clock)
    for partition in range(70):
        assert not guard.accept((TOPIC, partition), 1, 2)
    clock.now += refetch.FORGET_AFTER_S + 1
    assert not guard.accept((TOPIC, 99), 1, 2)
    assert list(guard._held) == [((TOPIC, 99), 1)]


def test_the_worker_metrics_export_the_guards_counts(
    guard: refetch.RefetchGuard, clock: Clock
) -> None:
    metrics = WorkerMetrics()
    metrics.watch_refetches(guard)
    metrics.watch_refetches(guard)  # once per registry
    assert _fetch(TP, 7, _batch(8, 1)) == ([], 7)
    clock.now += 5.0
    assert _fetch(TP, 7, _batch(8, 1)) == ([8], 9)
    text = generate_latest(metrics.registry).decode()
    assert "agentwatch_fetch_refetches_total 1.0" in text
    assert "agentwatch_fetch_holes_accepted_total 1.0" in text


def test_a_topic_whose_holes_stay_is_taken_for_compacted(
    guard: refetch.RefetchGuard, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    for offset in (10, 20, 30):  # three holes, each waited out
        assert _fetch(TP, offset, _batch(offset + 2, 1)) == ([], offset)
        clock.now += 3.5
        assert _fetch(TP, offset, _batch(offset + 2, 1)) == ([offset + 2], offset + 3)
    assert guard.accepted == 3 and not guard.guards(TOPIC)
    assert "aw.actions has had 3 holes that stayed: it looks compacted" in caplog.text
    assert _fetch(TP, 40, _batch(42, 1)) == ([42], 43)  # no wait any more
    assert guard.refetches == 3
