"""``agentwatch_consumer_lag``: every held actions partition, none that moved away."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from faust.types import TP

from agentwatch.config import Settings
from agentwatch.streams.app import _update_consumer_lag
from agentwatch.streams.metrics import WorkerMetrics


class FakeConsumer:
    def __init__(self) -> None:
        self.assigned: set[TP] = set()
        self.highwaters: dict[TP, int] = {}
        self._committed_offset: dict[TP, int] = {}

    def assignment(self) -> set[TP]:
        return set(self.assigned)

    def highwater(self, tp: TP) -> int:
        return self.highwaters[tp]


def lag(metrics: WorkerMetrics, tp: TP) -> float | None:
    return metrics.registry.get_sample_value(
        "agentwatch_consumer_lag", {"topic": tp.topic, "partition": str(tp.partition)}
    )


def test_lag_covers_unread_partitions_and_forgets_moved_ones() -> None:
    settings = Settings()
    topic = settings.topic("actions")
    p0, p1, other = TP(topic, 0), TP(topic, 1), TP(settings.topic("anomalies"), 0)
    consumer = FakeConsumer()
    positions: dict[Any, int] = {p0: 89}
    metrics = WorkerMetrics()
    worker = SimpleNamespace(
        app=SimpleNamespace(consumer=consumer),
        settings=settings,
        stage=SimpleNamespace(positions=lambda: positions),
        metrics=metrics,
    )
    reported: set[TP] = set()
    consumer.assigned = {p0, p1, other}
    consumer.highwaters = {p0: 100, p1: 50, other: 7}
    consumer._committed_offset = {p1: 20}
    _update_consumer_lag(worker, reported)  # type: ignore[arg-type]
    assert lag(metrics, p0) == 10  # read up to 89: 90..99 wait
    assert lag(metrics, p1) == 30  # never read here: from its committed offset
    assert lag(metrics, other) is None  # only the actions topic
    consumer.assigned = {p0, other}  # p1 moved to another worker
    _update_consumer_lag(worker, reported)  # type: ignore[arg-type]
    assert lag(metrics, p1) is None and reported == {p0}
    assert lag(metrics, p0) == 10
