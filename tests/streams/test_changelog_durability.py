"""Offsets never run ahead of the changelog: a SIGKILL while the changelog lags loses no event.

The worker (``tests/streams/changelog_fault_worker.py``) is held where the kill storm lost an
event by chance: its first baselines changelog record reached the broker but the
acknowledgement was never processed, and its later records are still in faust's producer
buffer, while the state they carry is already in RocksDB and the events in it are acked. If
offsets are committed then, a restart on the same RocksDB restores the older record from the
changelog over the newer local state, a worker taking over on a new disk restores only that
record, and neither reads the events after it again.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from agentwatch.config import Settings
from agentwatch.log_end import log_end_offsets
from agentwatch.streams.broker import free_port
from agentwatch.streams.stage import decode_state, home_partition
from agentwatch.streams.topics import ensure_topics
from tests.alerting.fakes import FakePagerDuty
from tests.conftest import API_TOKEN
from tests.streams.test_pipeline import encoded, event, produce
from tests.streams.test_response_crash import kill, start_worker

pytestmark = pytest.mark.integration

AGENT = "lag-1"
EVENTS = 12


async def events_counted(http: aiohttp.ClientSession, url: str) -> int | None:
    """The agent's baseline count as the worker shows it (``None``: unknown or unreachable)."""
    try:
        async with http.get(f"{url}/agents/{AGENT}") as resp:
            if resp.status != 200:
                return None
            count = (await resp.json()).get("events")
            return None if count is None else int(count)
    except aiohttp.ClientError:
        return None


async def wait_counted(
    http: aiohttp.ClientSession, url: str, expected: int, timeout: float
) -> int | None:
    """Poll the count until it equals ``expected`` or ``timeout`` passes; return the last one."""
    deadline = time.monotonic() + timeout
    count = None
    while time.monotonic() < deadline:
        count = await events_counted(http, url)
        if count == expected:
            break
        await asyncio.sleep(0.2)
    return count


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout: float) -> None:
    """Wait for ``/readyz`` to answer 200 (tables recovered, every stage running)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with http.get(f"{url}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, "worker not ready in time"
        await asyncio.sleep(0.2)


async def takeover_view(settings: Settings) -> tuple[int | None, int | None]:
    """What a worker taking over the agent's partition on a new disk starts from: the offset
    committed on the actions partition, and the last event offset in the agent's newest
    changelog record (``None``: nothing committed / no record)."""
    partition = home_partition(AGENT, settings.topic_partitions)
    actions = TopicPartition(settings.topic("actions"), partition)
    changelog = TopicPartition(f"{settings.app_id}-baselines-changelog", partition)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.app_id,  # only reads the group's offsets, never joins
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        committed = await consumer.committed(actions)
        consumer.assign([changelog])
        await consumer.seek_to_beginning(changelog)
        end = (await log_end_offsets(consumer, [changelog]))[changelog]
        stored = None
        while await consumer.position(changelog) < end:
            batches = await consumer.getmany(changelog, timeout_ms=1000)
            for record in batches.get(changelog, []):
                if record.key == AGENT.encode() and record.value:
                    stored = decode_state(record.value)[0]
    finally:
        await consumer.stop()
    return committed, stored


async def test_sigkill_while_the_changelog_lags_loses_no_event(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    await ensure_topics(settings)
    events = [encoded(event(i, AGENT)) for i in range(EVENTS + 1)]
    port = free_port("127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    async with FakePagerDuty() as pd, aiohttp.ClientSession(headers=auth) as http:
        worker = start_worker(
            settings,
            tmp_path,
            pd,
            module="tests.streams.changelog_fault_worker",
            web_port=port,
            api_token=API_TOKEN,
        )
        try:
            await produce(settings, events[: EVENTS // 2])
            got = await wait_counted(http, url, EVENTS // 2, timeout=60)
            assert got == EVENTS // 2, log.read_text()[-3000:]
            await asyncio.sleep(1.5)  # commits; the first changelog record is produced
            await produce(settings, events[EVENTS // 2 : EVENTS])
            got = await wait_counted(http, url, EVENTS, timeout=30)
            assert got == EVENTS, log.read_text()[-3000:]
            await asyncio.sleep(2.0)  # four commit intervals: offsets would be committed here
        finally:
            kill(worker)

        problems: list[str] = []
        committed, stored = await takeover_view(settings)
        assert stored is not None, "the first changelog record must be on the broker"
        # a new disk restores `stored` and reads from `committed`: nothing may fall in between
        if committed is not None and committed > stored + 1:
            problems.append(
                f"offsets committed up to {committed}, the changelog holds events up to "
                f"{stored}: a worker taking over on a new disk loses {committed - stored - 1}"
            )

        # restart on the same RocksDB (the kill storm's case)
        worker = start_worker(settings, tmp_path, pd, web_port=port, api_token=API_TOKEN)
        try:
            await wait_ready(http, url, timeout=60)
            # one more event: once it is counted, everything before it on the partition is
            await produce(settings, events[EVENTS:])
            got = await wait_counted(http, url, EVENTS + 1, timeout=30)
        finally:
            kill(worker)
    if got != EVENTS + 1:
        problems.append(f"{got} of {EVENTS + 1} events counted after a restart on the same disk")
    assert not problems, "\n".join(problems) + "\n" + log.read_text()[-3000:]
