"""A worker pages a real Alertmanager and a signed webhook; a restarted worker keeps refreshing.

Embedded broker, a live worker, Debian's ``prometheus-alertmanager`` on loopback routing to a
webhook receiver in the test, and the signed webhook notifier posting to a receiver that checks
every signature the way docs/alerting.md tells receivers to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.prometheus_stack import Alertmanager, WebhookReceiver, eventually
from tests.streams.test_pipeline import produce, wait_for
from tests.streams.test_response import risky, rules_file

pytestmark = pytest.mark.integration

SECRET = "live-" + "a1b2c3d4" * 5


def signed(request: web.Request, body: bytes) -> int | None:
    timestamp = request.headers.get("X-Agentwatch-Timestamp", "")
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
        return 401
    mac = hmac.new(SECRET.encode(), f"v1:{timestamp}:".encode() + body, hashlib.sha256)
    ok = hmac.compare_digest(
        request.headers.get("X-Agentwatch-Signature", ""), f"v1={mac.hexdigest()}"
    )
    return None if ok else 401


def am_config(hooks: WebhookReceiver) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "pager",
            "group_by": ["alertname", "agent_id"],
            "group_wait": "100ms",
            "group_interval": "300ms",
            "repeat_interval": "1h",
        },
        "receivers": [
            {
                "name": "pager",
                "webhook_configs": [{"url": f"{hooks.url}/pager", "send_resolved": True}],
            }
        ],
    }


def _ends(alert: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))


async def test_worker_pages_alertmanager_and_webhook_and_a_restart_keeps_alerts_firing(
    settings: Settings, tmp_path: Path
) -> None:
    async with (
        WebhookReceiver() as hooks,
        WebhookReceiver(check=signed) as webhook,
        Alertmanager(tmp_path / "am", am_config(hooks)) as am,
    ):
        base = settings.replace(
            rules_file=rules_file(tmp_path),
            notify_max_backoff_s=0.5,
            incident_group_wait_s=0.5,
            incident_resolve_after_s=600,
            routes={"critical": ["alertmanager", "webhook"]},
            alertmanager={"urls": [am.url], "resend_interval_s": 8},
            webhook={"url": f"{webhook.url}/agentwatch", "secret": SECRET},
        )
        first = create_app(base.replace(data_dir=tmp_path / "w1"))
        async with running_app(first):
            await produce(first.settings, [risky(i, "rogue-1") for i in range(3)])

            async def firing() -> bool:
                return len(await am.alerts(agent_id="rogue-1")) == 1

            await eventually(firing, 30, "the worker's alert is active in Alertmanager")
            await wait_for(lambda: len(webhook.on("/agentwatch")) == 1, timeout=10)
        (alert,) = await am.alerts(agent_id="rogue-1")
        assert alert["labels"] == {
            "alertname": "Unapproved",
            "agent_id": "rogue-1",
            "fleet": "support",
            "severity": "critical",
            "detector": "policy",
            "kind": alert["labels"]["kind"],
        }
        assert alert["annotations"]["runbook_url"] == "https://runbooks.example.com/unapproved"
        incident_id = alert["annotations"]["incident_id"]
        assert alert["generatorURL"].endswith(f"/incidents/{incident_id}")
        trigger = webhook.on("/agentwatch")[0]
        assert trigger.headers["X-Agentwatch-Event"] == "trigger"
        assert json.loads(trigger.body)["incident_id"] == incident_id
        paged = [r.json for r in hooks.on("/pager") if r.json["status"] == "firing"]
        assert paged and paged[0]["alerts"][0]["labels"]["alertname"] == "Unapproved"
        stopped_ends = _ends(alert)  # the worker is gone: nothing moves this any more

        # a new worker (empty local store) recovers the firing table and refreshes the alert
        second = create_app(base.replace(data_dir=tmp_path / "w2"))
        async with running_app(second):

            async def refreshed() -> bool:
                alerts = await am.alerts(agent_id="rogue-1")
                return len(alerts) == 1 and _ends(alerts[0]) > stopped_ends

            await eventually(refreshed, 20, "the restarted worker refreshed the alert")
            held = second.delivery.dispatcher.firing.firing("alertmanager")
            assert [r.incident_id for r in held] == [incident_id]
            assert not [r for r in hooks.on("/pager") if r.json["status"] == "resolved"]

            await second.response.incident_command(
                "resolve", incident_id, actor="alice", reason="fixed"
            )

            async def resolved() -> bool:
                return any(r.json["status"] == "resolved" for r in hooks.on("/pager"))

            await eventually(resolved, 15, "Alertmanager sent the resolve to its receiver")
            await wait_for(lambda: len(webhook.on("/agentwatch")) == 2, timeout=10)
            await asyncio.sleep(1.0)  # anything else (a duplicate) would have arrived by now
            assert second.delivery.dispatcher.firing.firing("alertmanager") == []
        assert await am.alerts(agent_id="rogue-1") == []
    events = [r.headers["X-Agentwatch-Event"] for r in webhook.on("/agentwatch")]
    assert events == ["trigger", "resolve"]  # the restart replayed nothing twice
