"""Holes in the offsets the ingest stage receives: the tracker, and the stage's report of them."""

from __future__ import annotations

import json
import logging

import pytest
from faust.types import TP

from agentwatch.config import Settings
from agentwatch.detectors.engine import Engine
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.engine_host import LocalEngine
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.offset_gaps import OffsetGaps
from agentwatch.streams.stage import BaselineStage
from tests.streams.test_pipeline import event

P0, P1 = TP("actions", 0), TP("actions", 1)


def test_a_partition_starts_wherever_its_first_message_is() -> None:
    gaps: OffsetGaps[TP] = OffsetGaps()
    assert gaps.expected(P0) is None
    assert gaps.see(P0, 1234) == 0
    assert gaps.expected(P0) == 1235
    assert [gaps.see(P0, o) for o in range(1235, 1240)] == [0] * 5
    assert gaps.expected(P0) == 1240


def test_an_offset_beyond_the_next_expected_counts_the_offsets_between() -> None:
    gaps: OffsetGaps[TP] = OffsetGaps()
    gaps.see(P0, 0)
    assert gaps.see(P0, 1) == 0
    assert gaps.see(P0, 7) == 5  # 2..6 never received
    assert gaps.expected(P0) == 8
    assert gaps.see(P0, 9) == 1
    assert gaps.see(P0, 10) == 0


def test_partitions_are_tracked_apart() -> None:
    gaps: OffsetGaps[TP] = OffsetGaps()
    gaps.see(P0, 100)
    gaps.see(P1, 5)
    assert gaps.see(P1, 6) == 0
    assert gaps.see(P0, 101) == 0
    assert gaps.see(P1, 10) == 3
    assert (gaps.expected(P0), gaps.expected(P1)) == (102, 11)


def test_a_seek_back_is_a_re_read_not_a_gap() -> None:
    gaps: OffsetGaps[TP] = OffsetGaps()
    for offset in range(20, 30):
        gaps.see(P0, offset)
    # rewound to the committed offset (faust after a recovery), read again
    assert [gaps.see(P0, o) for o in range(12, 30)] == [0] * 18
    assert gaps.expected(P0) == 30
    # a hole inside the re-read range lost nothing new: those offsets were received before
    assert gaps.see(P0, 15) == 0
    assert gaps.see(P0, 25) == 0
    assert gaps.expected(P0) == 30
    # past everything received: only the offsets never received count
    assert gaps.see(P0, 33) == 3
    assert gaps.expected(P0) == 34


def test_a_redelivered_offset_is_no_gap() -> None:
    gaps: OffsetGaps[TP] = OffsetGaps()
    assert [gaps.see(P0, o) for o in (4, 4, 5, 5, 6)] == [0] * 5
    assert gaps.expected(P0) == 7


def test_a_forgotten_partition_starts_again_anywhere() -> None:
    """Revoked, another worker may read it meanwhile: its offsets jump when it comes back."""
    gaps: OffsetGaps[TP] = OffsetGaps()
    gaps.see(P0, 10)
    gaps.see(P1, 10)
    gaps.forget([P0])
    assert gaps.partitions() == [P1]
    assert gaps.expected(P0) is None
    assert gaps.see(P0, 500) == 0
    assert gaps.expected(P0) == 501
    assert gaps.see(P1, 12) == 1  # untouched
    gaps.forget([P0, TP("actions", 9)])  # one never read: nothing to forget
    assert gaps.partitions() == [P1]


# -- the stage's report --------------------------------------------------------------------


class _Message:
    def __init__(self, tp: TP, offset: int, agent: str, i: int) -> None:
        self.tp, self.topic, self.partition, self.offset = tp, tp.topic, tp.partition, offset
        self.key = agent.encode()
        self.value = json.dumps(event(i, agent)).encode()
        self.headers: list[tuple[str, bytes]] = []


class _Event:
    """A faust event as the stage reads it (the message; weakly referenced while loading)."""

    def __init__(self, message: _Message) -> None:
        self.message = message


def _stage() -> BaselineStage:
    """A stage on a dict table, without rules (no anomalies) nor topics (no record rejected)."""
    metrics = WorkerMetrics()
    return BaselineStage(
        settings=Settings(),
        engine=LocalEngine(Engine()),
        table={},
        deadletters=DeadLetters(topic=None, metrics=metrics, max_bytes=1000),
        anomalies=None,
        actions=None,
        metrics=metrics,
    )


def _batch(tp: TP, offsets: list[int], agent: str = "a1") -> list[_Event]:
    return [_Event(_Message(tp, o, agent, o)) for o in offsets]


def _counted(stage: BaselineStage) -> tuple[float, float]:
    registry = stage.metrics.registry
    gaps = registry.get_sample_value("agentwatch_ingest_offset_gaps_total")
    skipped = registry.get_sample_value("agentwatch_ingest_offsets_skipped_total")
    assert gaps is not None and skipped is not None
    return gaps, skipped


async def test_the_stage_reports_a_hole_once_with_topic_partition_and_offsets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = _stage()
    caplog.set_level(logging.WARNING, logger="agentwatch.streams.stage")
    await stage.process_batch(_batch(P1, [40, 41, 42]))
    await stage.process_batch(_batch(P1, [43, 44]))
    await stage.process_batch(_batch(P1, [20, 21, 45]))  # a re-read from 20: no hole
    assert _counted(stage) == (0, 0)
    assert not caplog.records
    await stage.process_batch(_batch(P1, [46, 50, 51]))  # 47..49 never arrived
    assert _counted(stage) == (1, 3)
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert "actions partition 1" in line
    assert "expected offset 47, received 50, 3 missing" in line
    assert stage.engine.baselines["a1"].count == 9  # the events received are folded


async def test_more_holes_within_the_log_interval_are_counted_and_summed_into_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stage = _stage()
    caplog.set_level(logging.WARNING, logger="agentwatch.streams.stage")
    await stage.process_batch(_batch(P0, [0, 2, 5, 6, 10]))  # holes of 1, 2 and 3
    assert _counted(stage) == (3, 6)
    assert len(caplog.records) == 1
    assert "expected offset 1, received 2, 1 missing" in caplog.records[0].getMessage()
    # the next line (once the interval passed) says what it did not log
    stage._gap_logged[P0] = (stage._gap_logged[P0][0] - 60.0, *stage._gap_logged[P0][1:])
    await stage.process_batch(_batch(P0, [12]))
    assert _counted(stage) == (4, 7)
    assert len(caplog.records) == 2
    line = caplog.records[1].getMessage()
    assert "expected offset 11, received 12, 1 missing" in line
    assert "(2 more holes, 5 offsets, since the last warning)" in line


async def test_a_revoked_partition_starts_again_wherever_it_is_read_next() -> None:
    stage = _stage()
    await stage.process_batch(_batch(P0, [3, 4]) + _batch(P1, [7], agent="b1"))
    await stage.on_revoked([0])  # another worker reads partition 0 meanwhile, up to offset 99
    await stage.process_batch(_batch(P0, [100, 101]) + _batch(P1, [8], agent="b1"))
    assert _counted(stage) == (0, 0)
    await stage.process_batch(_batch(P1, [10], agent="b1"))
    assert _counted(stage) == (1, 1)
