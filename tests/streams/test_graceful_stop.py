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


async def hold_a_batch(settings: Settings, first: Any) -> None:
    """Fold and commit BEFORE events, then fold a risky one whose anomaly the broker never
    acknowledges; return while that batch waits."""
    held = asyncio.Event()
    publish = first.stage._publish

    async def slow_broker(topic: Any, purpose: str, records: Any) -> None:
        if purpose == "anomaly":
            held.set()
            await asyncio.sleep(3600)  # the broker never acknowledges before the stop
        await publish(topic, purpose, records)

    await produce(settings, [encoded(event(i, AGENT)) for i in range(BEFORE)])
    await wait_for(lambda: count(first) == BEFORE)
    await asyncio.sleep(2 * settings.commit_interval_s + 0.5)  # committed with its state
    first.stage._publish = slow_broker
    await produce(settings, [risky(BEFORE)])
    await asyncio.wait_for(held.wait(), timeout=20)
    assert count(first) == BEFORE + 1  # folded; its anomaly not acknowledged
    assert first.stage.busy


async def restart_finds_everything(settings: Settings, data_dir: Path) -> None:
    """A worker on a new disk: the held anomaly comes once, every event counts once."""
    second = create_app(settings.replace(data_dir=data_dir))
    async with running_app(second):
        await wait_for(lambda: count(second) == BEFORE + 1, timeout=30)
        found = await anomalies_of(settings, 1)
        assert [a["rule"] for a in found] == ["UnapprovedHighRiskAction"], found
        assert found[0]["evidence"] == [f"{AGENT}-{BEFORE}"]
        await asyncio.sleep(1.0)
        assert count(second) == BEFORE + 1


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
async def test_a_batch_cancelled_while_its_anomaly_waits_loses_nothing(
    settings: Settings, tmp_path: Path, store: str
) -> None:
    settings = settings.replace(store=store)
    first = create_app(settings.replace(data_dir=tmp_path / "w1"))
    async with running_app(first):
        await hold_a_batch(settings, first)
        first.app.stop_overdue()  # what a stop that stops waiting does to the batch
        await wait_for(lambda: first.stage.interrupted is not None, timeout=10)
        reason = first.stage.interrupted or ""
        assert f"{settings.topic('actions')}[" in reason and "(cancelled)" in reason
        assert await first.stage.flush() == 0  # nothing more is written, at revocation neither
    # and the worker stops (its last commit is refused)
    await restart_finds_everything(settings, tmp_path / "w2")


async def test_a_stop_waits_for_the_batch_in_progress_only_so_long(
    settings: Settings, tmp_path: Path
) -> None:
    """``AGENTWATCH_STOP_GRACE_S``: a stop that would wait forever for the broker cuts the
    batch short after the grace, and the next start reads it again."""
    settings = settings.replace(store="rocksdb", stop_grace_s=1.0)
    first = create_app(settings.replace(data_dir=tmp_path / "w1"))

    async def run_then_stop() -> None:
        async with running_app(first):
            await hold_a_batch(settings, first)

    await asyncio.wait_for(run_then_stop(), timeout=60)  # without the grace: never returns
    assert first.stage.interrupted is not None
    assert "(cancelled)" in first.stage.interrupted
    await restart_finds_everything(settings, tmp_path / "w2")
