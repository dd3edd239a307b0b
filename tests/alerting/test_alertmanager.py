"""Alertmanager notifier: alert building, the firing store, refreshes and errors (loopback fake).

The real Alertmanager is in ``test_alertmanager_live.py``; here a loopback receiver stands in
for it so status codes and outages can be scripted.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from agentwatch.alerting.dispatch import Dispatcher, MemoryDeliveryLog, NotificationMetrics
from agentwatch.alerting.firing import FiringStore, merge_firing
from agentwatch.alerting.notifiers import AlertmanagerNotifier, DeliveryError, build_alerts
from agentwatch.alerting.notifiers.alertmanager import label_name
from agentwatch.config import ConfigError, Settings, load_settings
from agentwatch.schemas import Anomaly
from tests.alerting.fakes import FakeClock, notify_settings, sample_notification
from tests.prometheus_stack import WebhookReceiver

T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)

RULES = """
groups:
  - name: test
    rules:
      - alert: CostSpike
        detector: cost_spike
        labels: {severity: critical, team: payments, "app.kubernetes.io/name": billing}
        annotations: {runbook_url: docs/runbook.md#cost-spike}
      - alert: RunawayLoop
        detector: runaway_loop
        labels: {severity: warning}
"""


def anomaly(n: int, rule: str = "CostSpike", severity: str = "critical", **kw: Any) -> Anomaly:
    values: dict[str, Any] = {
        "anomaly_id": f"an-{n}",
        "ts": T0 + timedelta(seconds=n),
        "agent_id": "support-7",
        "fleet": "support",
        "detector": "cost_spike" if rule == "CostSpike" else "runaway_loop",
        "kind": "cost" if rule == "CostSpike" else "repeat",
        "severity": severity,
        "score": 9.5,
        "threshold": 4.0,
        "observed": 12.5,
        "baseline": 1.25,
        "summary": f"{rule} #{n}",
        "rule": rule,
    }
    values.update(kw)
    return Anomaly(**values)


def am_settings(tmp_path: Path, *urls: str, **section: Any) -> Settings:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    return notify_settings(
        rules_file=rules,
        runbook_base_url="https://docs.example.com/aw/",
        routes={"critical": ["alertmanager"], "warning": ["alertmanager"]},
        alertmanager={"urls": list(urls) or ["http://127.0.0.1:9"], **section},
    )


def fixed_clock(at: datetime = NOW) -> Any:
    return at.timestamp


# -- building ------------------------------------------------------------------------------


def test_one_alert_per_rule_with_labels_annotations_and_times(tmp_path: Path) -> None:
    settings = am_settings(tmp_path, external_labels={"cluster": "prod", "team": "ignored"})
    notifier = AlertmanagerNotifier(settings, clock=fixed_clock())
    note = sample_notification(top_anomalies=[anomaly(2), anomaly(1, "RunawayLoop", "warning")])
    alerts = notifier.alerts(merge_firing(None, note))
    assert [a["labels"]["alertname"] for a in alerts] == ["RunawayLoop", "CostSpike"]
    cost = alerts[1]
    assert cost["labels"] == {
        "alertname": "CostSpike",
        "agent_id": "support-7",
        "fleet": "support",
        "severity": "critical",
        "detector": "cost_spike",
        "kind": "cost",
        "team": "payments",  # the rule's label wins over the external one
        "app_kubernetes_io_name": "billing",
        "cluster": "prod",
    }
    annotations = cost["annotations"]
    assert annotations["summary"] == "CostSpike #2"
    assert annotations["runbook_url"] == "https://docs.example.com/aw/docs/runbook.md#cost-spike"
    assert annotations["incident_url"] == "http://127.0.0.1:6066/incidents/inc-1"
    assert annotations["agent_url"] == "http://127.0.0.1:6066/agents/support-7"
    assert annotations["incident_status"] == "open"
    assert "observed 12.5 vs baseline 1.25" in annotations["description"]
    assert cost["generatorURL"] == "http://127.0.0.1:6066/incidents/inc-1"
    assert cost["startsAt"] == "2026-03-01T12:30:02Z"
    assert cost["endsAt"] == "2026-03-01T12:39:00Z"  # now + 4 x 60 s
    # a rule without its own runbook takes the notification's
    assert alerts[0]["annotations"]["runbook_url"] == "https://runbooks.example.com/cost-spike"


def test_resolve_ends_every_rule_ever_fired_not_only_the_top_five(tmp_path: Path) -> None:
    first = sample_notification(top_anomalies=[anomaly(1, "RunawayLoop", "warning")])
    later = sample_notification(
        notification_id="inc-1:2",
        reason="escalated",
        top_anomalies=[anomaly(n) for n in range(2, 7)],  # RunawayLoop fell out of the top 5
    )
    firing = merge_firing(merge_firing(None, first), later)
    assert [r.anomaly.rule for r in firing.rules] == ["RunawayLoop", "CostSpike"]
    cost = next(r for r in firing.rules if r.anomaly.rule == "CostSpike")
    assert cost.since == T0 + timedelta(seconds=2) and cost.anomaly.anomaly_id == "an-6"
    resolve = sample_notification(
        notification_id="inc-1:3",
        event="resolve",
        reason="resolved",
        created_at=NOW - timedelta(seconds=30),
        top_anomalies=[anomaly(6)],
    )
    alerts = build_alerts(merge_firing(firing, resolve), now=NOW, resend_interval_s=60)
    assert {a["labels"]["alertname"] for a in alerts} == {"RunawayLoop", "CostSpike"}
    assert {a["endsAt"] for a in alerts} == {"2026-03-01T12:34:30Z"}
    assert {a["annotations"]["incident_status"] for a in alerts} == {"resolved"}


def test_times_never_invert_and_never_start_in_the_future() -> None:
    future = anomaly(1, ts=NOW + timedelta(hours=1))  # an agent with a fast clock
    note = sample_notification(top_anomalies=[future])
    (alert,) = build_alerts(merge_firing(None, note), now=NOW, resend_interval_s=60)
    assert alert["startsAt"] == "2026-03-01T12:35:00Z"
    resolve = sample_notification(event="resolve", reason="resolved", created_at=T0)
    (ended,) = build_alerts(
        merge_firing(merge_firing(None, note), resolve), now=NOW, resend_interval_s=60
    )
    assert ended["startsAt"] <= ended["endsAt"]


def test_acknowledged_stays_firing_and_says_who(tmp_path: Path) -> None:
    ack = sample_notification(event="acknowledge", reason="acknowledged", actor="alice")
    notifier = AlertmanagerNotifier(am_settings(tmp_path), clock=fixed_clock())
    (alert,) = notifier.alerts(merge_firing(None, ack))
    assert alert["annotations"]["incident_status"] == "acknowledged"
    assert alert["annotations"]["acknowledged_by"] == "alice"
    assert alert["endsAt"] > format_now()


def format_now() -> str:
    return NOW.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_notification_without_anomalies_is_one_alert() -> None:
    note = sample_notification(top_anomalies=[], detectors=["policy"], severity="error")
    (alert,) = build_alerts(merge_firing(None, note), now=NOW, resend_interval_s=60)
    assert alert["labels"]["alertname"] == "AgentwatchAnomaly"
    assert alert["labels"]["detector"] == "policy" and alert["labels"]["severity"] == "error"
    assert alert["annotations"]["summary"] == note.title


def test_label_names_and_links() -> None:
    assert label_name("a-b c") == "a_b_c" and label_name("") == "_"
    note = sample_notification(agent_url="https://aw.example/console/agents/support-7")
    assert note.incident_url == "https://aw.example/console/incidents/inc-1"
    assert sample_notification(agent_url=None).incident_url is None
    (alert,) = build_alerts(
        merge_firing(None, sample_notification(agent_url=None)), now=NOW, resend_interval_s=60
    )
    assert "generatorURL" not in alert and "incident_url" not in alert["annotations"]


# -- settings -------------------------------------------------------------------------------


def test_section_from_environment_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "agentwatch.toml"
    config.write_text(
        '[agentwatch.alertmanager]\nurls = ["http://file:9093"]\nresend_interval_s = 30\n'
    )
    monkeypatch.setenv("AGENTWATCH_ALERTMANAGER__URLS", "http://am-1:9093/, http://am-2:9093")
    monkeypatch.setenv("AGENTWATCH_ALERTMANAGER__BEARER_TOKEN", "s3cret-token")
    settings = load_settings(config)
    assert settings.alertmanager.urls == ["http://am-1:9093", "http://am-2:9093"]  # env wins
    assert settings.alertmanager.resend_interval_s == 30  # the file's other keys stay
    assert "s3cret-token" not in repr(settings) and "s3cret-token" not in str(settings)
    monkeypatch.setenv("AGENTWATCH_ALERTMANAGER__URLS", "am-1:9093")
    with pytest.raises(ConfigError, match="AGENTWATCH_ALERTMANAGER__URLS"):
        load_settings(config)


def test_basic_auth_needs_both_halves() -> None:
    with pytest.raises(ValueError, match="go together"):
        Settings(alertmanager={"urls": ["http://am:9093"], "basic_auth_username": "u"})


# -- delivery against a loopback receiver ---------------------------------------------------


async def test_posts_with_auth_and_classifies_answers(tmp_path: Path) -> None:
    async with WebhookReceiver() as am:
        settings = am_settings(tmp_path, am.url, bearer_token="tok-abcdef")
        notifier = AlertmanagerNotifier(settings, clock=fixed_clock())
        try:
            await notifier.send(sample_notification())
            (request,) = am.received
            assert request.path == "/api/v2/alerts"
            assert request.headers["Authorization"] == "Bearer tok-abcdef"
            assert request.json[0]["labels"]["alertname"] == "CostSpike"
            for status, retryable in ((400, False), (422, False), (503, True), (429, True)):
                am.answers.append(status)
                with pytest.raises(DeliveryError) as info:
                    await notifier.send(sample_notification())
                assert info.value.retryable is retryable, status
                assert "tok-abcdef" not in str(info.value)
        finally:
            await notifier.aclose()


async def test_one_alertmanager_of_two_is_enough(tmp_path: Path) -> None:
    async with WebhookReceiver() as up:
        settings = am_settings(tmp_path, "http://127.0.0.1:9", up.url)
        notifier = AlertmanagerNotifier(settings, clock=fixed_clock())
        try:
            await notifier.send(sample_notification())
            assert len(up.received) == 1
            up.answers.append(500)
            with pytest.raises(DeliveryError) as info:
                await notifier.send(sample_notification())
            assert info.value.retryable
        finally:
            await notifier.aclose()


async def test_dispatcher_keeps_incidents_firing_until_resolved(tmp_path: Path) -> None:
    clock = FakeClock()
    registry = CollectorRegistry()
    async with WebhookReceiver() as am:
        settings = am_settings(tmp_path, am.url, resend_interval_s=10)
        notifier = AlertmanagerNotifier(settings, clock=clock)
        store = FiringStore()
        dispatcher = Dispatcher(
            settings,
            {"alertmanager": notifier},
            MemoryDeliveryLog(),
            firing=store,
            metrics=NotificationMetrics(registry),
            clock=clock,
            sleep=clock.sleep,
            rng=random.Random(1),
        )
        try:
            assert await dispatcher.refresh_due() == {"alertmanager": "ok"}
            assert am.received == []  # nothing firing: nothing posted
            first = sample_notification(top_anomalies=[anomaly(1, "RunawayLoop", "warning")])
            await dispatcher.deliver(first)
            later = sample_notification(notification_id="inc-1:2", reason="escalated")
            await dispatcher.deliver(later)
            assert [r.incident_id for r in store.firing("alertmanager")] == ["inc-1"]
            clock.now += 5
            assert await dispatcher.refresh_due() == {}  # not due yet
            clock.now += 6
            assert await dispatcher.refresh_due() == {"alertmanager": "ok"}
            refresh = am.received[-1].json
            assert {a["labels"]["alertname"] for a in refresh} == {"RunawayLoop", "CostSpike"}
            ends = datetime.fromisoformat(refresh[0]["endsAt"].replace("Z", "+00:00"))
            assert ends.timestamp() == pytest.approx(clock.now + 40, abs=1)

            am.answers.append(503)  # an outage: tried again after a quarter interval
            clock.now += 10
            assert await dispatcher.refresh_due() == {"alertmanager": "failed"}
            clock.now += 2.6
            assert await dispatcher.refresh_due() == {"alertmanager": "ok"}
            assert (
                registry.get_sample_value(
                    "agentwatch_notification_refreshes_total",
                    {"notifier": "alertmanager", "result": "failed"},
                )
                == 1.0
            )

            resolve = sample_notification(
                notification_id="inc-1:3", event="resolve", reason="resolved"
            )
            result = await dispatcher.deliver(resolve)
            assert result.sent == ("alertmanager",)
            ended = am.received[-1].json
            assert {a["labels"]["alertname"] for a in ended} == {"RunawayLoop", "CostSpike"}
            assert store.firing("alertmanager") == []
            posts = len(am.received)
            clock.now += 60
            await dispatcher.refresh_due()
            assert len(am.received) == posts  # resolved incidents are not refreshed
        finally:
            await dispatcher.aclose()


async def test_a_replayed_resolve_is_skipped_and_a_new_dispatcher_resumes_refreshing(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    async with WebhookReceiver() as am:
        settings = am_settings(tmp_path, am.url, resend_interval_s=10)
        store, log = FiringStore(), MemoryDeliveryLog()

        def dispatcher() -> Dispatcher:
            return Dispatcher(
                settings,
                {"alertmanager": AlertmanagerNotifier(settings, clock=clock)},
                log,
                firing=store,
                clock=clock,
                sleep=clock.sleep,
            )

        first = dispatcher()
        await first.deliver(sample_notification())
        await first.aclose()
        # a restarted worker: same store (the faust table), a new dispatcher
        second = dispatcher()
        try:
            assert await second.refresh_due() == {"alertmanager": "ok"}
            assert len(am.received) == 2
            replay = await second.deliver(sample_notification())
            assert replay.skipped == ("alertmanager",) and len(am.received) == 2
        finally:
            await second.aclose()


async def test_unrouted_firing_incidents_are_not_refreshed(tmp_path: Path) -> None:
    clock = FakeClock()
    async with WebhookReceiver() as am:
        settings = am_settings(tmp_path, am.url)
        store = FiringStore()
        store.put("alertmanager", merge_firing(None, sample_notification(severity="info")))
        dispatcher = Dispatcher(
            settings,
            {"alertmanager": AlertmanagerNotifier(settings)},
            MemoryDeliveryLog(),
            firing=store,
            clock=clock,
            sleep=clock.sleep,
        )
        try:
            assert await dispatcher.refresh_due() == {"alertmanager": "ok"}
            assert am.received == []  # info routes nowhere
        finally:
            await dispatcher.aclose()


def test_store_skips_unreadable_records() -> None:
    store = FiringStore({b"alertmanager:x": b"{broken", b"slack:y": b"{}"})
    store.put("alertmanager", merge_firing(None, sample_notification()))
    assert [r.incident_id for r in store.firing("alertmanager")] == ["inc-1"]
    store.delete("alertmanager", "inc-1")
    store.delete("alertmanager", "never-there")
    assert store.firing("alertmanager") == []
