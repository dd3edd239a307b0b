"""The Alertmanager notifier against a real Alertmanager (Debian's ``prometheus-alertmanager``).

Alertmanager runs on loopback with a routing tree of two receivers (critical alerts to
``pager``, the rest to ``chat``), grouped by agent, each a webhook to a loopback receiver in the
test. The notifier's alerts must arrive routed and grouped with their labels, stay firing past
their first ``endsAt`` while the dispatcher refreshes them, and resolve when the incident does;
an alert nobody refreshes is resolved by Alertmanager itself (why the refresh exists).
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentwatch.alerting.dispatch import Dispatcher, MemoryDeliveryLog
from agentwatch.alerting.firing import FiringStore
from agentwatch.alerting.notifiers import AlertmanagerNotifier
from agentwatch.schemas import Anomaly
from tests.alerting.fakes import notify_settings, sample_notification
from tests.prometheus_stack import Alertmanager, WebhookReceiver, eventually

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: live
    rules:
      - alert: CostSpike
        detector: cost_spike
        labels: {severity: critical, team: payments}
      - alert: RunawayLoop
        detector: runaway_loop
        labels: {severity: critical}
      - alert: ToolMixShift
        detector: mix_shift
        labels: {severity: warning}
"""


def am_config(receiver: WebhookReceiver) -> dict[str, Any]:
    def hook(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "webhook_configs": [{"url": f"{receiver.url}/{name}", "send_resolved": True}],
        }

    return {
        "route": {
            "receiver": "chat",
            "group_by": ["agent_id"],
            "group_wait": "200ms",
            "group_interval": "500ms",
            "repeat_interval": "1h",
            "routes": [{"matchers": ['severity="critical"'], "receiver": "pager"}],
        },
        "receivers": [hook("chat"), hook("pager")],
    }


def anomaly(n: int, rule: str, detector: str, kind: str, severity: str) -> Anomaly:
    return Anomaly(
        anomaly_id=f"an-{n}",
        ts=datetime.now(UTC) - timedelta(seconds=30 - n),
        agent_id="support-7",
        fleet="support",
        detector=detector,
        kind=kind,
        severity=severity,  # type: ignore[arg-type]
        score=9.5,
        threshold=4.0,
        observed=12.5,
        baseline=1.25,
        summary=f"{rule}: observed 12.5 vs 1.25",
        rule=rule,
    )


def groups(receiver: WebhookReceiver, path: str, status: str) -> list[dict[str, Any]]:
    """Webhook notifications Alertmanager sent to ``path`` with group ``status``."""
    return [r.json for r in receiver.on(path) if r.json["status"] == status]


async def test_alerts_route_group_stay_firing_while_refreshed_and_resolve(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES)
    async with WebhookReceiver() as hooks, Alertmanager(tmp_path / "am", am_config(hooks)) as am:
        settings = notify_settings(
            rules_file=rules,
            routes={"critical": ["alertmanager"], "warning": ["alertmanager"]},
            alertmanager={
                "urls": [am.url],
                "resend_interval_s": 1,  # endsAt 4 s ahead: expiry is quick to observe
                "external_labels": {"cluster": "test"},
            },
        )
        store = FiringStore()
        dispatcher = Dispatcher(
            settings,
            {"alertmanager": AlertmanagerNotifier(settings)},
            MemoryDeliveryLog(),
            firing=store,
            rng=random.Random(3),
        )
        lone = AlertmanagerNotifier(settings)  # posts once, never refreshes
        try:
            now = datetime.now(UTC)
            trigger = sample_notification(
                created_at=now,
                top_anomalies=[
                    anomaly(1, "CostSpike", "cost_spike", "cost", "critical"),
                    anomaly(2, "RunawayLoop", "runaway_loop", "repeat", "critical"),
                ],
            )
            assert (await dispatcher.deliver(trigger)).sent == ("alertmanager",)
            unrefreshed = sample_notification(
                notification_id="inc-2:1",
                incident_id="inc-2",
                dedup_key="inc-2",
                agent_id="ops-3",
                fleet="ops",
                severity="warning",
                created_at=now,
                agent_url="http://127.0.0.1:6066/agents/ops-3",
                top_anomalies=[
                    anomaly(3, "ToolMixShift", "mix_shift", "mix", "warning").model_copy(
                        update={"agent_id": "ops-3", "fleet": "ops"}
                    )
                ],
            )
            await lone.send(unrefreshed)

            # routed and grouped: both critical rules of support-7 in one pager notification
            async def paged() -> bool:
                return bool(groups(hooks, "/pager", "firing"))

            await eventually(paged, 10, "the pager receiver got the critical group")
            group = groups(hooks, "/pager", "firing")[0]
            assert group["receiver"] == "pager"
            assert group["groupLabels"] == {"agent_id": "support-7"}
            assert {a["labels"]["alertname"] for a in group["alerts"]} == {
                "CostSpike",
                "RunawayLoop",
            }
            cost = next(a for a in group["alerts"] if a["labels"]["alertname"] == "CostSpike")
            assert cost["labels"] == {
                "alertname": "CostSpike",
                "agent_id": "support-7",
                "fleet": "support",
                "severity": "critical",
                "detector": "cost_spike",
                "kind": "cost",
                "team": "payments",
                "cluster": "test",
            }
            assert cost["annotations"]["summary"] == "CostSpike: observed 12.5 vs 1.25"
            assert cost["annotations"]["incident_url"].endswith("/incidents/inc-1")
            assert cost["annotations"]["runbook_url"] == "https://runbooks.example.com/cost-spike"
            assert cost["generatorURL"] == "http://127.0.0.1:6066/incidents/inc-1"

            async def chatted() -> bool:
                return bool(groups(hooks, "/chat", "firing"))

            await eventually(chatted, 10, "the chat receiver got the warning")
            chat = groups(hooks, "/chat", "firing")[0]
            assert [a["labels"]["alertname"] for a in chat["alerts"]] == ["ToolMixShift"]
            assert chat["groupLabels"] == {"agent_id": "ops-3"}

            # 7 s: past the first endsAt (4 s) of both; only the refreshed incident stays firing
            deadline = asyncio.get_running_loop().time() + 7.0
            while asyncio.get_running_loop().time() < deadline:
                await dispatcher.refresh_due()
                await asyncio.sleep(0.25)
            active = await am.alerts(agent_id="support-7")
            assert {a["labels"]["alertname"] for a in active} == {"CostSpike", "RunawayLoop"}
            assert all(a["status"]["state"] == "active" for a in active)
            assert groups(hooks, "/pager", "resolved") == []
            assert await am.alerts(agent_id="ops-3") == []  # expired: nobody refreshed it

            async def chat_resolved() -> bool:
                return bool(groups(hooks, "/chat", "resolved"))

            await eventually(chat_resolved, 10, "Alertmanager resolved the unrefreshed alert")

            # the incident resolves: both alerts end, the pager hears "resolved"
            resolve = sample_notification(
                notification_id="inc-1:9",
                event="resolve",
                reason="resolved",
                created_at=datetime.now(UTC),
                top_anomalies=[],
            )
            assert (await dispatcher.deliver(resolve)).sent == ("alertmanager",)

            async def pager_resolved() -> bool:
                return bool(groups(hooks, "/pager", "resolved"))

            await eventually(pager_resolved, 10, "the pager receiver got the resolve")
            resolved = groups(hooks, "/pager", "resolved")[-1]
            assert {a["labels"]["alertname"] for a in resolved["alerts"]} == {
                "CostSpike",
                "RunawayLoop",
            }
            assert all(a["status"] == "resolved" for a in resolved["alerts"])
            assert await am.alerts(agent_id="support-7") == []
            assert store.firing("alertmanager") == []
        finally:
            await dispatcher.aclose()
            await lone.aclose()
