"""Token buckets with an injected clock: acquire waits, never drops."""

from __future__ import annotations

import asyncio

import pytest

from agentwatch.alerting.dispatch import Dispatcher, MemoryDeliveryLog
from agentwatch.alerting.notifiers import (
    AlertmanagerNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    WebhookNotifier,
)
from agentwatch.alerting.ratelimit import Rate, TokenBucket
from agentwatch.config import Settings
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
    rate = PagerDutyNotifier(notify_settings(pagerduty_events_per_minute=120)).rate()
    bucket = TokenBucket(rate, clock=clock, sleep=clock.sleep)
    for _ in range(12 + 120):
        await bucket.acquire()
    assert clock.now - 1000.0 == pytest.approx(60.0)


def test_each_notifier_owns_its_rate() -> None:
    settings = notify_settings(
        pagerduty_events_per_minute=120,
        slack_messages_per_second=1.0,
        alertmanager={"urls": ["http://127.0.0.1:9093"], "requests_per_second": 4.0},
        webhook={"url": "http://127.0.0.1:9", "secret": "s" * 32, "requests_per_second": 3.0},
    )
    pagerduty = PagerDutyNotifier(settings).rate()
    assert pagerduty.per_second == pytest.approx(2.0)
    assert pagerduty.burst == pytest.approx(12.0)
    assert SlackNotifier(settings).rate() == Rate(1.0, 1.0)
    assert AlertmanagerNotifier(settings).rate() == Rate(4.0, 1.0)
    assert WebhookNotifier(settings).rate() == Rate(3.0, 1.0)


def test_the_dispatcher_paces_every_notifier_at_its_own_rate() -> None:
    """Alertmanager's and the webhook's ``requests_per_second`` were documented and ignored:
    the dispatcher only knew PagerDuty's and Slack's limits."""
    settings = Settings(
        routes={"critical": ["webhook", "alertmanager"]},  # type: ignore[dict-item]
        alertmanager={"urls": ["http://127.0.0.1:9093"], "requests_per_second": 4.0},  # type: ignore[arg-type]
        webhook={"url": "http://127.0.0.1:9", "secret": "s" * 32, "requests_per_second": 3.0},  # type: ignore[arg-type]
    )
    notifiers = {
        "webhook": WebhookNotifier(settings),
        "alertmanager": AlertmanagerNotifier(settings),
    }
    dispatcher = Dispatcher(settings, notifiers, MemoryDeliveryLog())
    assert dispatcher.rates == {"webhook": Rate(3.0, 1.0), "alertmanager": Rate(4.0, 1.0)}


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
