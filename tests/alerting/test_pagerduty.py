"""PagerDuty notifier against the loopback Events API v2 fake."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from agentwatch.alerting.notifiers import NOTIFIERS, DeliveryError, PagerDutyNotifier, build_event
from agentwatch.alerting.notifiers.base import parse_retry_after, truncate
from agentwatch.schemas import Notification
from tests.alerting.fakes import (
    PAGERDUTY_ROUTING_KEY,
    FakePagerDuty,
    notify_settings,
    sample_notification,
    validate_pagerduty_event,
)


async def _send(fake: FakePagerDuty, notification: Notification, **kw: Any) -> None:
    notifier = PagerDutyNotifier(notify_settings(fake), **kw)
    try:
        await notifier.send(notification)
    finally:
        await notifier.aclose()


@pytest.mark.parametrize("severity", ["critical", "error", "warning", "info"])
async def test_trigger_carries_the_notification_severity(
    fake_pagerduty: FakePagerDuty, severity: str
) -> None:
    await _send(fake_pagerduty, sample_notification(severity=severity))
    (event,) = fake_pagerduty.accepted("trigger")
    assert event["payload"]["severity"] == severity
    assert event["routing_key"] == PAGERDUTY_ROUTING_KEY


async def test_trigger_maps_every_field(fake_pagerduty: FakePagerDuty) -> None:
    n = sample_notification()
    await _send(fake_pagerduty, n)
    (event,) = fake_pagerduty.events
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "inc-1"
    assert event["client"] == "agentwatch"
    payload = event["payload"]
    assert payload["summary"] == n.title
    assert payload["source"] == payload["component"] == "support-7"
    assert payload["group"] == "support"
    assert payload["class"] == "cost_spike"
    assert payload["timestamp"] == "2026-03-01T12:30:00Z"
    assert event["links"] == [
        {"href": "https://runbooks.example.com/cost-spike", "text": "Runbook"},
        {"href": "http://127.0.0.1:6066/incidents/inc-1", "text": "Incident inc-1"},
        {"href": "http://127.0.0.1:6066/agents/support-7", "text": "Agent support-7"},
    ]
    assert event["client_url"] == "http://127.0.0.1:6066/incidents/inc-1"


async def test_custom_details_explain_the_incident(fake_pagerduty: FakePagerDuty) -> None:
    await _send(fake_pagerduty, sample_notification())
    details = fake_pagerduty.events[0]["payload"]["custom_details"]
    assert (details["observed"], details["baseline"]) == (12.5, 1.25)
    assert "12.5" in details["observed_vs_baseline"] and "1.25" in details["observed_vs_baseline"]
    (top,) = details["top_anomalies"]
    assert top["detector"] == "cost_spike" and top["kind"] == "cost"
    assert (top["score"], top["threshold"]) == (9.5, 4.0)
    assert top["evidence"] == [f"ev-{i}" for i in range(10)]  # at most 10 ids
    assert top["evidence_count"] == 15
    assert details["control"]["halted"] is True
    assert details["control"]["revoked"] == ["refund"]
    assert details["control"]["version"] == 4
    assert details["actions_taken"] == ["halted agent support-7", "revoked refund"]
    assert details["commands"][0] == "agentwatch agents resume support-7"
    assert details["incident_id"] == "inc-1" and details["anomaly_count"] == 3


async def test_no_links_without_urls(fake_pagerduty: FakePagerDuty) -> None:
    await _send(fake_pagerduty, sample_notification(runbook_url=None, agent_url=None))
    event = fake_pagerduty.events[0]
    assert "links" not in event and "client_url" not in event


async def test_only_runbook_link(fake_pagerduty: FakePagerDuty) -> None:
    await _send(fake_pagerduty, sample_notification(agent_url=None))
    assert fake_pagerduty.events[0]["links"] == [
        {"href": "https://runbooks.example.com/cost-spike", "text": "Runbook"}
    ]


async def test_summary_is_truncated_to_1024_characters(fake_pagerduty: FakePagerDuty) -> None:
    long_title = "x" * 3000  # bypass the model's own limit: the notifier must not rely on it
    n = sample_notification().model_copy(update={"title": long_title})
    await _send(fake_pagerduty, n)  # the fake rejects summaries over 1024 characters
    summary = fake_pagerduty.events[0]["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


def test_truncate_keeps_short_text_and_bounds_long_text() -> None:
    assert truncate("abc", 3) == "abc"
    assert truncate("abcdef", 4) == "abc…"
    assert len(truncate("é" * 5000, 1024)) == 1024
    assert truncate("anything", 0) == ""


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
async def test_acknowledge_and_resolve_carry_only_the_documented_keys(
    fake_pagerduty: FakePagerDuty, action: str
) -> None:
    await _send(fake_pagerduty, sample_notification(event=action, reason="resolved"))
    (event,) = fake_pagerduty.events
    assert event == {
        "routing_key": PAGERDUTY_ROUTING_KEY,
        "event_action": action,
        "dedup_key": "inc-1",
    }


def test_build_event_has_no_routing_key() -> None:
    assert "routing_key" not in build_event(sample_notification())


def test_fake_validates_like_the_documentation() -> None:
    good = {**build_event(sample_notification()), "routing_key": PAGERDUTY_ROUTING_KEY}
    assert validate_pagerduty_event(good) == []
    bad_key = {**good, "routing_key": "short"}
    assert any("32 characters" in e for e in validate_pagerduty_event(bad_key))
    bad_severity = {**good, "payload": {**good["payload"], "severity": "high"}}
    assert any("severity" in e for e in validate_pagerduty_event(bad_severity))
    no_source = {**good, "payload": {k: v for k, v in good["payload"].items() if k != "source"}}
    assert any("source" in e for e in validate_pagerduty_event(no_source))
    bad_ts = {**good, "payload": {**good["payload"], "timestamp": "yesterday"}}
    assert any("timestamp" in e for e in validate_pagerduty_event(bad_ts))
    resolve_without_key = {"routing_key": PAGERDUTY_ROUTING_KEY, "event_action": "resolve"}
    assert any("dedup_key" in e for e in validate_pagerduty_event(resolve_without_key))
    long_dedup = {**good, "dedup_key": "k" * 256}
    assert any("255" in e for e in validate_pagerduty_event(long_dedup))
    bad_link = {**good, "links": [{"text": "no href"}]}
    assert any("href" in e for e in validate_pagerduty_event(bad_link))


async def test_400_is_not_retryable_and_says_why(fake_pagerduty: FakePagerDuty) -> None:
    fake = FakePagerDuty(routing_key="f" * 32)  # our key is not this integration's
    async with fake:
        with pytest.raises(DeliveryError) as info:
            await _send(fake, sample_notification())
    assert info.value.retryable is False
    assert info.value.reason == "rejected"
    assert "400" in str(info.value) and "routing_key' is invalid" in str(info.value)
    assert PAGERDUTY_ROUTING_KEY not in str(info.value)


async def test_error_echoing_the_routing_key_is_redacted(
    fake_pagerduty: FakePagerDuty, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_pagerduty.fail_next(1, 400, errors=[f"unknown routing key {PAGERDUTY_ROUTING_KEY}"])
    with pytest.raises(DeliveryError) as info:
        await _send(fake_pagerduty, sample_notification())
    assert "unknown routing key ***" in str(info.value)
    assert PAGERDUTY_ROUTING_KEY not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    await _send(fake_pagerduty, sample_notification())
    assert PAGERDUTY_ROUTING_KEY not in caplog.text


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_retryable(fake_pagerduty: FakePagerDuty, status: int) -> None:
    fake_pagerduty.fail_next(1, status)
    with pytest.raises(DeliveryError) as info:
        await _send(fake_pagerduty, sample_notification())
    assert info.value.retryable is True and info.value.reason == "server_error"
    assert len(fake_pagerduty.requests) == 1  # the client itself did not retry


async def test_429_is_retryable_with_retry_after(fake_pagerduty: FakePagerDuty) -> None:
    fake_pagerduty.fail_next(1, 429, retry_after=7)
    with pytest.raises(DeliveryError) as info:
        await _send(fake_pagerduty, sample_notification())
    assert info.value.retryable is True
    assert info.value.reason == "rate_limited"
    assert info.value.retry_after == 7.0
    assert len(fake_pagerduty.requests) == 1  # no unbounded retry inside the client


async def test_timeout_is_retryable(fake_pagerduty: FakePagerDuty) -> None:
    fake_pagerduty.delay_next(1, 0.5)
    with pytest.raises(DeliveryError) as info:
        await _send(fake_pagerduty, sample_notification(), timeout_s=0.1)
    assert info.value.retryable is True and info.value.reason == "timeout"


async def test_connection_refused_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = notify_settings(pagerduty_url=f"http://127.0.0.1:{port}")
    settings = settings.replace(pagerduty_routing_key=PAGERDUTY_ROUTING_KEY)
    notifier = PagerDutyNotifier(settings, timeout_s=2.0)
    with pytest.raises(DeliveryError) as info:
        await notifier.send(sample_notification())
    await notifier.aclose()
    assert info.value.retryable is True and info.value.reason == "connection"
    assert PAGERDUTY_ROUTING_KEY not in str(info.value)


async def test_plain_http_is_refused_off_loopback() -> None:
    settings = notify_settings(
        pagerduty_url="http://events.example.com", pagerduty_routing_key=PAGERDUTY_ROUTING_KEY
    )
    with pytest.raises(DeliveryError) as info:
        await PagerDutyNotifier(settings).send(sample_notification())
    assert info.value.retryable is False


def test_factory_is_registered_and_needs_a_routing_key() -> None:
    assert NOTIFIERS["pagerduty"](notify_settings()) is None
    built = NOTIFIERS["pagerduty"](notify_settings(pagerduty_routing_key="k" * 32))
    assert isinstance(built, PagerDutyNotifier)


def test_repr_of_settings_hides_the_key() -> None:
    settings = notify_settings(pagerduty_routing_key=PAGERDUTY_ROUTING_KEY)
    notifier = PagerDutyNotifier(settings)
    assert PAGERDUTY_ROUTING_KEY not in repr(vars(notifier))


def test_parse_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("-3") == 0.0
    assert parse_retry_after("nan") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_relative_runbook_path_is_a_detail_not_a_link() -> None:
    from agentwatch.alerting.notifiers.pagerduty import build_event

    event = build_event(sample_notification(runbook_url="docs/runbook.md#exfiltration"))
    assert all(not link["href"].startswith("docs/") for link in event.get("links", []))
    assert event["payload"]["custom_details"]["runbook"] == "docs/runbook.md#exfiltration"
