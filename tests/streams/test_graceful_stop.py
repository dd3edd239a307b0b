"""A stop that cancels a batch half done loses no anomaly and counts no event twice.

A worker's ingest is cancelled (a stop that runs out of patience, a supervisor's timeout)
while a batch it already folded waits for the broker to acknowledge that batch's anomaly,
and the worker then stops, committing on its way out. If the state of that batch were
written and offsets committed past the last commit, a restart would skip the batch's events
(already in the stored state) and the anomaly would never be published: a missed page,
with no dead letter and no log line. Instead nothing more is written or committed, and the
next start reads the events since the last commit again, as after a kill.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_pipeline import encoded, event, produce, read_topic, wait_for

pytestmark = pytest.mark.integration

AGENT = "deploy-1"
BEFORE = 20  # ordinary events folded (and committed) before the held batch


def risky(i: int) -> tuple[bytes, bytes]:
    return encoded(
        event(i, AGENT, action="drop_table", risk="critical", target="db:orders", cost_usd=0.0)
    )


def count(worker: Any) -> int:
    baseline = worker.stage.engine.baselines.get(AGENT)
    return 0 if baseline is None else int(baseline.count)


async def anomalies_of(settings: Settings, at_least: int) -> list[dict[str, Any]]:
    records = await read_topic(settings, "anomalies", at_least, timeout=5.0)
    docs = [json.loads(r.value) for r in records]
    return [d for d in docs if d["agent_id"] == AGENT]


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_a_stop_while_a_batch_waits_for_its_anomaly_loses_nothing(
    settings: Settings, tmp_path: Path, store: str
) -> None:
    first = create_app(settings.replace(store=store, data_dir=tmp_path / "w1"))
    held = asyncio.Event()
    publish = first.stage._publish

    async def slow_broker(topic: Any, purpose: str, records: Any) -> None:
        if purpose == "anomaly":
            held.set()
            await asyncio.sleep(3600)  # the broker never acknowledges before the stop
        await publish(topic, purpose, records)

    async with running_app(first):
        await produce(settings, [encoded(event(i, AGENT)) for i in range(BEFORE)])
        await wait_for(lambda: count(first) == BEFORE)
        await asyncio.sleep(2 * settings.commit_interval_s + 0.5)  # committed with its state
        first.stage._publish = slow_broker  # type: ignore[method-assign]
        await produce(settings, [risky(BEFORE)])
        await asyncio.wait_for(held.wait(), timeout=20)
        assert count(first) == BEFORE + 1  # folded; its anomaly not acknowledged
        for actor in first.app.agents["baselines"]._actors:
            actor.actor_task.cancel()  # what a stop that stops waiting does to the batch
        await wait_for(lambda: first.stage.interrupted is not None, timeout=10)
        reason = first.stage.interrupted or ""
        assert f"{settings.topic('actions')}[" in reason and "(cancelled)" in reason
        assert first.stage.flush() == 0  # nothing more is written, at revocation neither
    # and the worker stops (its last commit is refused)

    second = create_app(settings.replace(store=store, data_dir=tmp_path / "w2"))
    async with running_app(second):
        await wait_for(lambda: count(second) == BEFORE + 1, timeout=30)
        found = await anomalies_of(settings, 1)
        assert [a["rule"] for a in found] == ["UnapprovedHighRiskAction"], found
        assert found[0]["evidence"] == [f"{AGENT}-{BEFORE}"]
        await asyncio.sleep(1.0)
        assert count(second) == BEFORE + 1  # each event counted once
