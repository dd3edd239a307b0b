"""A hole in an actions partition (events the worker's consumer skipped) is reported, on the
embedded broker: the way faust loses events it dropped when a seek does not read them again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from faust.types import TP

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from agentwatch.streams.stage import home_partition
from tests.streams.test_pipeline import encoded, event, produce, wait_for

pytestmark = pytest.mark.integration


async def test_events_the_consumer_skipped_are_reported_as_an_offset_gap(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="agentwatch.streams.stage")
    agent = "gap-1"
    tp = TP(settings.topic("actions"), home_partition(agent, settings.topic_partitions))
    worker = create_app(settings)
    stage, registry = worker.stage, worker.metrics.registry

    def counted() -> tuple[float | None, float | None]:
        return (
            registry.get_sample_value("agentwatch_ingest_offset_gaps_total"),
            registry.get_sample_value("agentwatch_ingest_offsets_skipped_total"),
        )

    def folded() -> int:
        baseline = stage.engine.baselines.get(agent)
        return 0 if baseline is None else baseline.count

    async with running_app(worker):
        await produce(settings, [encoded(event(i, agent)) for i in range(10)])  # offsets 0..9
        await wait_for(lambda: folded() == 10, timeout=30)
        assert counted() == (0, 0), "a gap reported while every offset was read"

        # the consumer skips offsets 10..14 of the agent's partition (as when faust dropped
        # buffered events and its seek left the partition past them)
        consumer = worker.app.consumer
        consumer.pause_partitions([tp])  # 10..29 are not handed to the agent meanwhile
        await produce(settings, [encoded(event(i, agent)) for i in range(10, 30)])
        await consumer.seek(tp, 15)
        consumer.resume_partitions([tp])

        await wait_for(lambda: folded() == 25, timeout=30)
        await asyncio.sleep(0.5)  # nothing else arrives
        assert folded() == 25
        assert counted() == (1, 5)
    gaps = [r for r in caplog.records if "offset gap" in r.getMessage()]
    assert len(gaps) == 1, [r.getMessage() for r in gaps]
    assert gaps[0].levelno == logging.WARNING
    assert (
        f"offset gap on {tp.topic} partition {tp.partition}: "
        "expected offset 10, received 15, 5 missing"
    ) in gaps[0].getMessage()
