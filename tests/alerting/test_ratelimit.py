"""Token buckets with an injected clock: acquire waits, never drops."""

from __future__ import annotations

import asyncio

import pytest

from agentwatch.alerting.ratelimit import Rate, TokenBucket, notifier_rates
from tests.alerting.fakes import FakeClock, notify_settings


def _bucket(clock: FakeClock, per_second: float, burst: float = 1.0) -> TokenBucket:
    return TokenBucket(Rate(per_second, burst), clock=clock, sleep=clock.sleep)


async def test_burst_is_free_then_acquire_waits_for_the_refill() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, per_second=2.0, burst=2)
    await bucket.acquire()
    await bucket.acquire()
    assert clock.sleeps == []
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(0.5)]
    await bucket.acquire()
    assert clock.now == pytest.approx(1001.0)


async def test_idle_time_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, per_second=1.0, burst=3)
    for _ in range(3):
        await bucket.acquire()
    clock.now += 3600.0
    assert bucket.available == pytest.approx(3.0)
    for _ in range(3):
        await bucket.acquire()
    assert clock.sleeps == []
    await bucket.acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_concurrent_waiters_are_all_served_in_order_at_the_rate() -> None:
    clock = FakeClock()
    bucket = _bucket(clock, per_second=1.0)
    served: list[tuple[int, float]] = []

    async def worker(i: int) -> None:
        await bucket.acquire()
        served.append((i, clock.now))

    await asyncio.gather(*(worker(i) for i in range(6)))
    assert [i for i, _ in served] == list(range(6))  # first come, first served
    times = [t - 1000.0 for _, t in served]
    assert times == pytest.approx([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])


async def test_pagerduty_pacing_is_120_per_minute_after_the_burst() -> None:
    clock = FakeClock()
    rates = notifier_rates(notify_settings(pagerduty_events_per_minute=120))
    bucket = TokenBucket(rates["pagerduty"], clock=clock, sleep=clock.sleep)
    for _ in range(12 + 120):
        await bucket.acquire()
    assert clock.now - 1000.0 == pytest.approx(60.0)


def test_notifier_rates_follow_settings() -> None:
    rates = notifier_rates(
        notify_settings(pagerduty_events_per_minute=120, slack_messages_per_second=1.0)
    )
    assert rates["pagerduty"].per_second == pytest.approx(2.0)
    assert rates["pagerduty"].burst == pytest.approx(12.0)
    assert rates["slack"] == Rate(1.0, 1.0)


def test_rate_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="per_second"):
        Rate(0.0)
    with pytest.raises(ValueError, match="burst"):
        Rate(1.0, burst=0.5)


async def test_real_clock_paces_a_fast_bucket() -> None:
    bucket = TokenBucket(Rate(per_second=50.0, burst=1))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(6):
        await bucket.acquire()
    assert loop.time() - start >= 0.09  # five waits of 20 ms
