"""Dispatcher: routing, idempotency, pacing, retries until success, metrics, outages."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentwatch.alerting.dispatch import (
    Dispatcher,
    MemoryDeliveryLog,
    NotificationMetrics,
    backoff_delay,
    build_notifiers,
    delivery_key,
)
from agentwatch.alerting.notifiers import DeliveryError, Notifier, PagerDutyNotifier, SlackNotifier
from agentwatch.alerting.ratelimit import Rate
from agentwatch.config import ConfigError, Settings
from agentwatch.schemas import Notification
from tests.alerting.fakes import (
    FakeClock,
    FakePagerDuty,
    FakeSlack,
    notify_settings,
    sample_notification,
)


class ScriptedNotifier(Notifier):
    """Records sends; raises the scripted errors first, one per attempt."""

    def __init__(self, name: str, errors: list[BaseException] | None = None) -> None:
        self.name = name  # type: ignore[misc]
        self.errors = list(errors or [])
        self.attempts: list[str] = []
        self.sent: list[Notification] = []
        self.closed = False

    async def send(self, notification: Notification) -> None:
        self.attempts.append(notification.notification_id)
        await asyncio.sleep(0)
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append(notification)

    async def aclose(self) -> None:
        self.closed = True


class RecordingSleep:
    """Sleeps for real but only a millisecond; remembers what was asked."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await asyncio.sleep(0.001)


def _retryable(retry_after: float | None = None) -> DeliveryError:
    return DeliveryError("HTTP 503", retryable=True, retry_after=retry_after, reason="server_error")


def _dispatcher(
    settings: Settings,
    notifiers: dict[str, Notifier],
    log: MemoryDeliveryLog | None = None,
    **kw: Any,
) -> Dispatcher:
    kw.setdefault("sleep", RecordingSleep())
    kw.setdefault("rng", random.Random(7))
    kw.setdefault("initial_backoff_s", 0.01)
    kw.setdefault("rates", {})  # unpaced unless a test asks (pacing is tested on its own)
    return Dispatcher(settings, notifiers, log if log is not None else MemoryDeliveryLog(), **kw)


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


# -- routing ---------------------------------------------------------------------------


async def test_routes_by_severity() -> None:
    pd, slack = ScriptedNotifier("pagerduty"), ScriptedNotifier("slack")
    dispatcher = _dispatcher(notify_settings(), {"pagerduty": pd, "slack": slack})
    critical = await dispatcher.deliver(sample_notification(severity="critical"))
    assert sorted(critical.sent) == ["pagerduty", "slack"]
    warning = await dispatcher.deliver(sample_notification(notification_id="w", severity="warning"))
    assert warning.sent == ("slack",)
    info = await dispatcher.deliver(sample_notification(notification_id="i", severity="info"))
    assert info.outcomes == () and info.ok
    assert [n.notification_id for n in pd.sent] == ["inc-1:0"]
    assert [n.notification_id for n in slack.sent] == ["inc-1:0", "w"]


async def test_fleet_routes_override_the_severities_they_name() -> None:
    settings = notify_settings(
        fleet_routes={"payments": {"warning": ["pagerduty"], "critical": ["pagerduty"]}}
    )
    pd, slack = ScriptedNotifier("pagerduty"), ScriptedNotifier("slack")
    dispatcher = _dispatcher(settings, {"pagerduty": pd, "slack": slack})
    assert dispatcher.destinations("warning", "payments") == ("pagerduty",)
    assert dispatcher.destinations("critical", "payments") == ("pagerduty",)
    assert dispatcher.destinations("error", "payments") == ("pagerduty", "slack")  # inherited
    assert dispatcher.destinations("warning", "support") == ("slack",)
    result = await dispatcher.deliver(sample_notification(fleet="payments", severity="warning"))
    assert result.sent == ("pagerduty",)
    assert slack.sent == []


def test_unknown_notifier_in_routes_is_a_config_error() -> None:
    settings = notify_settings(routes={"critical": ["pagerdutty"]})
    with pytest.raises(ConfigError) as info:
        _dispatcher(settings, {})
    assert "'routes'" in str(info.value) and "pagerdutty" in str(info.value)
    assert "pagerduty" in str(info.value)  # lists the known names


def test_unknown_notifier_in_fleet_routes_names_the_fleet() -> None:
    settings = notify_settings(fleet_routes={"payments": {"error": ["email"]}})
    with pytest.raises(ConfigError, match=r"fleet_routes\.payments"):
        _dispatcher(settings, {})


async def test_unconfigured_destination_warns_once_at_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentwatch.alerting.dispatch")
    slack = ScriptedNotifier("slack")
    dispatcher = _dispatcher(notify_settings(), {"slack": slack})
    warnings = [r for r in caplog.records if "pagerduty" in r.getMessage()]
    assert len(warnings) == 1
    caplog.clear()
    for i in range(3):
        result = await dispatcher.deliver(sample_notification(notification_id=f"n{i}"))
        assert result.sent == ("slack",) and result.unconfigured == ("pagerduty",)
    assert not [r for r in caplog.records if "pagerduty" in r.getMessage()]


def test_build_notifiers_skips_unconfigured_and_does_no_io(
    fake_pagerduty: FakePagerDuty,
) -> None:
    built = build_notifiers(notify_settings(fake_pagerduty))
    assert set(built) == {"pagerduty"}
    assert isinstance(built["pagerduty"], PagerDutyNotifier)
    assert fake_pagerduty.requests == []


# -- idempotency -----------------------------------------------------------------------


async def test_second_delivery_of_the_same_id_sends_nothing() -> None:
    pd, slack = ScriptedNotifier("pagerduty"), ScriptedNotifier("slack")
    log = MemoryDeliveryLog()
    dispatcher = _dispatcher(notify_settings(), {"pagerduty": pd, "slack": slack}, log)
    first = await dispatcher.deliver(sample_notification())
    assert sorted(first.sent) == ["pagerduty", "slack"]
    assert set(log.store) == {"pagerduty:inc-1:0", "slack:inc-1:0"}
    second = await dispatcher.deliver(sample_notification())
    assert second.sent == () and sorted(second.skipped) == ["pagerduty", "slack"]
    assert len(pd.attempts) == len(slack.attempts) == 1


async def test_replay_after_a_crash_resends_only_the_missing_destination() -> None:
    log = MemoryDeliveryLog({delivery_key("pagerduty", "inc-1:0"): True})
    pd, slack = ScriptedNotifier("pagerduty"), ScriptedNotifier("slack")
    dispatcher = _dispatcher(notify_settings(), {"pagerduty": pd, "slack": slack}, log)
    result = await dispatcher.deliver(sample_notification())
    assert result.sent == ("slack",) and result.skipped == ("pagerduty",)
    assert pd.attempts == []


async def test_concurrent_duplicates_send_once() -> None:
    slack = ScriptedNotifier("slack", [_retryable(), _retryable()])
    dispatcher = _dispatcher(notify_settings(routes={"critical": ["slack"]}), {"slack": slack})
    results = await asyncio.gather(*(dispatcher.deliver(sample_notification()) for _ in range(4)))
    assert len(slack.sent) == 1
    assert sorted(r.sent + r.skipped for r in results) == [("slack",)] * 4
    assert sum(len(r.sent) for r in results) == 1


# -- retries ---------------------------------------------------------------------------


async def test_retryable_errors_are_retried_until_success_with_capped_backoff() -> None:
    sleep = RecordingSleep()
    slack = ScriptedNotifier("slack", [_retryable() for _ in range(8)])
    settings = notify_settings(routes={"warning": ["slack"]}, notify_max_backoff_s=0.2)
    dispatcher = _dispatcher(settings, {"slack": slack}, sleep=sleep, initial_backoff_s=0.01)
    result = await dispatcher.deliver(sample_notification(severity="warning"))
    assert result.sent == ("slack",)
    assert result.outcomes[0].attempts == 9
    assert len(sleep.asked) == 8
    assert all(0 < s <= 0.2 for s in sleep.asked)
    assert sleep.asked[-1] > sleep.asked[0]  # it backs off
    assert max(sleep.asked) == pytest.approx(0.2, abs=0.1)


async def test_waiting_on_names_a_destination_only_while_it_backs_off() -> None:
    seen: list[list[str]] = []

    async def sleep(delay: float) -> None:
        seen.append(dispatcher.waiting_on())

    slack = ScriptedNotifier("slack", [_retryable(), _retryable()])
    settings = notify_settings(routes={"warning": ["slack"]}, notify_max_backoff_s=0.2)
    dispatcher = _dispatcher(settings, {"slack": slack}, sleep=sleep)
    assert dispatcher.waiting_on() == []
    await dispatcher.deliver(sample_notification(severity="warning"))
    assert seen == [["slack"], ["slack"]]
    assert dispatcher.waiting_on() == []


async def test_retry_after_is_honoured_up_to_the_cap() -> None:
    sleep = RecordingSleep()
    slack = ScriptedNotifier("slack", [_retryable(retry_after=1.5), _retryable(retry_after=99)])
    settings = notify_settings(routes={"warning": ["slack"]}, notify_max_backoff_s=5.0)
    dispatcher = _dispatcher(settings, {"slack": slack}, sleep=sleep)
    await dispatcher.deliver(sample_notification(severity="warning"))
    assert sleep.asked[0] >= 1.5
    assert sleep.asked[1] == 5.0


async def test_non_retryable_error_stops_that_destination_only() -> None:
    registry = CollectorRegistry()
    pd = ScriptedNotifier("pagerduty", [DeliveryError("HTTP 400: bad", retryable=False)])
    slack = ScriptedNotifier("slack")
    log = MemoryDeliveryLog()
    dispatcher = _dispatcher(
        notify_settings(),
        {"pagerduty": pd, "slack": slack},
        log,
        metrics=NotificationMetrics(registry),
    )
    result = await dispatcher.deliver(sample_notification())
    assert not result.ok
    (failed,) = result.failed
    assert failed.destination == "pagerduty" and failed.error == "HTTP 400: bad"
    assert failed.reason == "rejected" and failed.attempts == 1
    assert result.sent == ("slack",)
    assert set(log.store) == {"slack:inc-1:0"}  # a failure is not recorded
    assert (
        _sample(
            registry,
            "agentwatch_notification_failures_total",
            notifier="pagerduty",
            reason="rejected",
        )
        == 1
    )


async def test_a_notifier_bug_is_a_failure_not_a_retry_loop() -> None:
    slack = ScriptedNotifier("slack", [KeyError("oops")])
    dispatcher = _dispatcher(notify_settings(routes={"critical": ["slack"]}), {"slack": slack})
    result = await dispatcher.deliver(sample_notification())
    (failed,) = result.failed
    assert failed.reason == "internal" and len(slack.attempts) == 1


async def test_cancelled_delivery_records_nothing() -> None:
    slack = ScriptedNotifier("slack", [_retryable() for _ in range(10_000)])
    log = MemoryDeliveryLog()
    dispatcher = _dispatcher(notify_settings(routes={"critical": ["slack"]}), {"slack": slack}, log)
    task = asyncio.create_task(dispatcher.deliver(sample_notification()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log.store == {} and slack.sent == []
    assert len(slack.attempts) > 1  # it was still retrying, not giving up


def test_backoff_grows_is_jittered_and_capped() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, initial=1.0, cap=60.0, rng=rng) for a in range(1, 12)]
    for attempt, delay in enumerate(delays, start=1):
        base = min(60.0, 2.0 ** (attempt - 1))
        assert base / 2 <= delay <= base
    assert delays[-1] <= 60.0
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jitter spreads capped retries
    assert backoff_delay(1, initial=1.0, cap=60.0, retry_after=30.0) == 30.0
    assert backoff_delay(1, initial=1.0, cap=10.0, retry_after=30.0) == 10.0


# -- metrics ---------------------------------------------------------------------------


async def test_metrics_count_sends_and_skips_without_agent_labels() -> None:
    registry = CollectorRegistry()
    slack = ScriptedNotifier("slack", [_retryable()])
    dispatcher = _dispatcher(
        notify_settings(routes={"critical": ["slack"]}),
        {"slack": slack},
        metrics=NotificationMetrics(registry),
    )
    await dispatcher.deliver(sample_notification())
    await dispatcher.deliver(sample_notification())
    await dispatcher.deliver(sample_notification(notification_id="inc-1:1", event="resolve"))
    sent = "agentwatch_notifications_sent_total"
    assert _sample(registry, sent, notifier="slack", event="trigger") == 1
    assert _sample(registry, sent, notifier="slack", event="resolve") == 1
    assert (
        _sample(
            registry,
            "agentwatch_notification_failures_total",
            notifier="slack",
            reason="server_error",
        )
        == 1
    )
    assert _sample(registry, "agentwatch_notifications_skipped_total", notifier="slack") == 1
    assert (
        _sample(registry, "agentwatch_notification_delivery_seconds_count", notifier="slack") == 2
    )
    assert _sample(registry, "agentwatch_notifications_pending", notifier="slack") == 0
    for family in registry.collect():
        for sample in family.samples:
            assert not {"agent_id", "agent", "incident_id"} & set(sample.labels)


async def test_each_destination_is_paced_by_its_own_bucket() -> None:
    clock = FakeClock()
    pd, slack = ScriptedNotifier("pagerduty"), ScriptedNotifier("slack")
    dispatcher = _dispatcher(
        notify_settings(),
        {"pagerduty": pd, "slack": slack},
        rates={"slack": Rate(per_second=1.0), "pagerduty": Rate(per_second=10.0, burst=5)},
        clock=clock,
        sleep=clock.sleep,
    )
    for i in range(5):
        await dispatcher.deliver(sample_notification(notification_id=f"n{i}"))
    assert len(pd.sent) == len(slack.sent) == 5
    # Slack's one-per-second bucket set the pace; nothing was dropped on the way.
    assert clock.now - 1000.0 == pytest.approx(4.0)
    assert all(s == pytest.approx(1.0) for s in clock.sleeps)


async def test_aclose_closes_every_notifier() -> None:
    pd, slack = ScriptedNotifier("pagerduty"), ScriptedNotifier("slack")
    dispatcher = _dispatcher(notify_settings(), {"pagerduty": pd, "slack": slack})
    await dispatcher.aclose()
    assert pd.closed and slack.closed


# -- against the fakes -----------------------------------------------------------------


async def test_end_to_end_with_both_services(
    fake_pagerduty: FakePagerDuty, fake_slack: FakeSlack
) -> None:
    settings = notify_settings(fake_pagerduty, fake_slack)
    dispatcher = Dispatcher.from_settings(settings, MemoryDeliveryLog(), initial_backoff_s=0.01)
    assert isinstance(dispatcher.notifiers["slack"], SlackNotifier)
    try:
        opened = await dispatcher.deliver(sample_notification())
        resolved = await dispatcher.deliver(
            sample_notification(notification_id="inc-1:1", event="resolve", reason="resolved")
        )
    finally:
        await dispatcher.aclose()
    assert sorted(opened.sent) == sorted(resolved.sent) == ["pagerduty", "slack"]
    assert [e["event_action"] for e in fake_pagerduty.events] == ["trigger", "resolve"]
    assert {e["dedup_key"] for e in fake_pagerduty.events} == {"inc-1"}
    assert len(fake_slack.messages) == 2


async def test_pagerduty_outage_delays_but_never_drops(fake_pagerduty: FakePagerDuty) -> None:
    fake_pagerduty.fail_next(3, 500)
    fake_pagerduty.fail_for(0.4, 429)
    settings = notify_settings(fake_pagerduty, routes={"critical": ["pagerduty"]})
    dispatcher = Dispatcher.from_settings(settings, MemoryDeliveryLog(), initial_backoff_s=0.01)
    incidents = [f"inc-{i}" for i in range(3)]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(
                *(
                    dispatcher.deliver(
                        sample_notification(
                            notification_id=f"{inc}:0", incident_id=inc, dedup_key=inc
                        )
                    )
                    for inc in incidents
                )
            ),
            timeout=10,
        )
    finally:
        await dispatcher.aclose()
    assert all(r.sent == ("pagerduty",) for r in results)
    statuses = [r.status for r in fake_pagerduty.requests]
    assert statuses.count(500) == 3 and statuses.count(429) >= 1
    # Exactly one trigger per incident was accepted: nothing lost, nothing doubled.
    assert sorted(e["dedup_key"] for e in fake_pagerduty.accepted("trigger")) == incidents
    assert statuses[-3:] == [202, 202, 202]


async def test_slack_retry_after_is_honoured(fake_slack: FakeSlack) -> None:
    fake_slack.fail_next(1, 429, retry_after=1)
    settings = notify_settings(
        slack=fake_slack, routes={"warning": ["slack"]}, notify_max_backoff_s=2.0
    )
    dispatcher = Dispatcher.from_settings(settings, MemoryDeliveryLog(), initial_backoff_s=0.01)
    try:
        result = await dispatcher.deliver(sample_notification(severity="warning"))
    finally:
        await dispatcher.aclose()
    assert result.sent == ("slack",)
    first, second = fake_slack.requests
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 0.95  # waited for Retry-After, not the 10 ms backoff
    assert len(fake_slack.messages) == 1
