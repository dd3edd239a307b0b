"""The worker's fetch wait: short while it is idle (a halt's hops do not wait out the long
fetch wait of a broker that holds fetches), long while it is busy (no throughput lost)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from agentwatch.streams.transport import FetchWait
from tests.streams.test_pipeline import encoded, event, wait_for


def test_a_worker_starts_idle_and_turns_busy_at_the_threshold() -> None:
    wait = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=2000)
    assert wait.current == 10
    assert wait.choose(999, 0.5) == 10  # 1,998 events/s: still idle
    assert wait.choose(1000, 0.5) == 100  # 2,000 events/s: busy


def test_a_busy_worker_turns_idle_only_below_half_the_threshold() -> None:
    wait = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=2000)
    wait.choose(5000, 1.0)
    assert wait.choose(1001, 1.0) == 100  # between half and the threshold: stays busy
    assert wait.choose(999, 1.0) == 10
    assert wait.choose(1999, 1.0) == 10  # and stays idle until the threshold itself


def test_an_idle_wait_longer_than_the_busy_one_is_the_busy_one() -> None:
    wait = FetchWait(busy_ms=50, idle_ms=500, busy_events_per_s=100)
    assert wait.current == 50 and wait.choose(0, 1.0) == 50


def test_an_idle_worker_holds_fetches_back_only_as_long_as_its_wait() -> None:
    wait = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=2000)
    assert wait.prefetch_backoff_s == pytest.approx(0.01)
    wait.choose(5000, 1.0)
    assert wait.busy and wait.prefetch_backoff_s == pytest.approx(0.1)


def test_an_idle_worker_never_lets_its_fetcher_sleep_longer_than_its_wait() -> None:
    wait = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=2000)
    assert wait.poll_timeout_s == pytest.approx(0.01)
    wait.choose(5000, 1.0)
    assert wait.busy and wait.poll_timeout_s == pytest.approx(0.2)  # aiokafka's own


def test_a_zero_threshold_keeps_the_long_wait_always_and_no_time_means_no_rate() -> None:
    always = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=0)
    assert always.choose(0, 1.0) == 100
    wait = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=10)
    assert wait.choose(50, 0.0) == 10


@pytest.mark.integration
async def test_the_live_consumer_fetches_short_when_idle_and_long_when_busy(
    settings: Settings,
) -> None:
    worker = create_app(
        settings.replace(fetch_max_wait_ms=200, fetch_idle_wait_ms=7, fetch_busy_events_per_s=500)
    )

    def fetcher() -> Any:
        return worker.app.consumer._thread._consumer._fetcher

    def fetcher_wait() -> int:
        return int(fetcher()._fetch_max_wait_ms)

    async with running_app(worker):
        assert fetcher_wait() == 7  # idle from the start
        assert worker.metrics.fetch_wait._value.get() == pytest.approx(0.007)
        # a partition holding records not yet taken holds other fetches back this long, and
        # a fetch routine that found nothing to send looks again this soon (aiokafka: 0.1 s
        # and 0.2 s), from the start and after the first look at the load (0.5 s later)
        assert fetcher()._prefetch_backoff == pytest.approx(0.007)
        assert fetcher()._fetcher_timeout == pytest.approx(0.007)
        await asyncio.sleep(1.2)
        assert fetcher()._prefetch_backoff == pytest.approx(0.007)
        assert fetcher()._fetcher_timeout == pytest.approx(0.007)
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
        await producer.start()
        try:
            for i in range(3000):  # far more than 500 events/s for the next look
                key, value = encoded(event(i, agent=f"a{i % 20}"))
                await producer.send(settings.topic("actions"), value, key=key)
            await producer.flush()
        finally:
            await producer.stop()
        await wait_for(lambda: fetcher_wait() == 200)
        assert worker.metrics.fetch_wait._value.get() == pytest.approx(0.2)
        assert fetcher()._prefetch_backoff == pytest.approx(0.1)  # aiokafka's own
        assert fetcher()._fetcher_timeout == pytest.approx(0.2)  # aiokafka's own
        await wait_for(lambda: fetcher_wait() == 7)  # the burst is folded: idle again
