"""Silences, evidence and history end to end: embedded broker, worker, loopback PagerDuty/Slack."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.runner import running_app
from tests.alerting.fakes import FakePagerDuty, FakeSlack
from tests.streams.test_pipeline import encoded, event, produce, wait_for
from tests.streams.test_response import paging

pytestmark = pytest.mark.integration

NOTIFY_RULES = """
groups:
  - name: test
    rules:
      - alert: Unapproved
        detector: policy
        cooldown: 0s
        labels: {severity: critical, team: care}
"""


def risky(i: int, agent: str) -> tuple[bytes, bytes]:
    return encoded(event(i, agent, action="drop_table", risk="critical", target="db:users"))


def sources(pd: FakePagerDuty) -> list[str]:
    return [e["payload"]["source"] for e in pd.accepted("trigger")]


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def notify_worker(
    settings: Settings,
    tmp_path: Path,
    pd: FakePagerDuty,
    slack: FakeSlack,
    rules_text: str = NOTIFY_RULES,
) -> WorkerApp:
    """A worker paging the fakes with ``rules_text`` (incidents resolve after 600 s)."""
    rules = tmp_path / "notify.yml"
    rules.write_text(rules_text)
    return create_app(
        paging(settings, tmp_path, pd, slack, incident_resolve_after_s=600).replace(
            rules_file=rules
        )
    )


async def test_silenced_anomaly_is_recorded_not_paged_and_pages_after_expiry(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as slack:
        worker = notify_worker(settings, tmp_path, pd, slack)
        base = worker.web_url
        async with running_app(worker), aiohttp.ClientSession(headers=auth) as http:
            async with aiohttp.ClientSession() as anonymous:
                for method, path in [
                    ("GET", "/anomalies"),
                    ("GET", "/audit"),
                    ("GET", "/silences"),
                    ("POST", "/silences"),
                    ("DELETE", "/silences/sil-1?actor=x"),
                    ("GET", "/agents/quiet/events"),
                ]:
                    async with anonymous.request(method, f"{base}{path}") as resp:
                        assert resp.status == 401, (method, path)
            ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            bad = {"matchers": ["agent"], "ends_at": ends, "created_by": "a", "comment": "c"}
            async with http.post(f"{base}/silences", json=bad) as resp:
                assert resp.status == 400
                assert "not a matcher" in str(await resp.json())
            body = {
                "matchers": ['agent="quiet"', 'team=~"ca.*"'],
                "ends_at": ends,
                "created_by": "alice",
                "comment": "deploying quiet",
            }
            async with http.post(f"{base}/silences", json=body) as resp:
                assert resp.status == 201, await resp.text()
                silence = await resp.json()
            sid = silence["silence_id"]
            assert silence["status"] == "active"
            listed = await get(http, f"{base}/silences")
            assert [s["silence_id"] for s in listed["silences"]] == [sid]

            await produce(worker.settings, [risky(1, "quiet"), risky(1, "loud")])
            await wait_for(lambda: sources(pd) == ["loud"], timeout=30)

            async def quiet_anomalies() -> list[dict[str, Any]]:
                doc = await get(http, f"{base}/anomalies?agent=quiet")
                return list(doc["anomalies"])

            recorded = await quiet_anomalies()
            assert len(recorded) == 1
            assert recorded[0]["silenced_by"] == [sid] and recorded[0]["muted"] is True
            assert recorded[0]["evidence_events"] == [
                {
                    "event_id": "quiet-1",
                    "held": True,
                    "event": recorded[0]["evidence_events"][0]["event"],
                }
            ]
            assert recorded[0]["evidence_events"][0]["event"]["action"] == "drop_table"
            worker.stage.recent.evict(["quiet"])  # as after a restart: the captured copy is left
            again = await quiet_anomalies()
            assert again[0]["evidence_events"] == recorded[0]["evidence_events"]
            await asyncio.sleep(2.5)  # group wait (1 s) and ticks (1 s) passed: no page
            assert sources(pd) == ["loud"]
            assert all("quiet" not in str(m) for m in slack.messages)
            audit = (await get(http, f"{base}/audit?agent=quiet"))["audit"]
            suppressed = [a for a in audit if a["action"] == "suppressed"]
            assert len(suppressed) == 1 and suppressed[0]["detail"]["silenced_by"] == [sid]

            async with http.delete(f"{base}/silences/{sid}?actor=alice") as resp:
                assert resp.status == 200
                assert (await resp.json())["status"] == "expired"
            assert (await get(http, f"{base}/silences"))["silences"] == []
            every = await get(http, f"{base}/silences?all=true")
            assert [s["status"] for s in every["silences"]] == ["expired"]

            await produce(worker.settings, [risky(2, "quiet")])
            await wait_for(lambda: sorted(sources(pd)) == ["loud", "quiet"], timeout=30)
            key = next(
                e["dedup_key"] for e in pd.accepted("trigger") if e["payload"]["source"] == "quiet"
            )
            incident = await get(http, f"{base}/incidents/{key}")
            recorded = await quiet_anomalies()
    assert [r["muted"] for r in recorded] == [False, True]
    assert [a["evidence"] for a in incident["anomalies"]] == [["quiet-2"]]
    shown = incident["anomalies"][0]
    assert shown["silenced_by"] == [] and shown["score"] >= shown["threshold"]
    assert {"summary", "observed", "baseline"} <= set(shown)
    assert shown["evidence_events"][0]["held"] is True
    assert shown["evidence_events"][0]["event"]["event_id"] == "quiet-2"
    actions = [a["action"] for a in incident["audit"]]
    assert "suppressed" in actions and "incident_open" in actions and "notify" in actions
    assert len(pd.accepted("trigger")) == 2


INHIBIT_RULES = (
    NOTIFY_RULES
    + """
inhibit_rules:
  - name: fleet-outage
    source_matchers: ['rule="Unapproved"']
    target_matchers: ['rule="Unapproved"']
    equal: [fleet]
    min_agents: 2
    window: 10m
"""
)


async def test_fleet_outage_inhibits_the_rest_of_the_fleets_pages(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as slack:
        worker = notify_worker(settings, tmp_path, pd, slack, INHIBIT_RULES)
        history = worker.response.history
        assert history is not None
        async with running_app(worker), aiohttp.ClientSession(headers=auth) as http:
            await produce(worker.settings, [risky(1, "f-1"), risky(1, "f-2")])
            await wait_for(lambda: len(history.anomalies()) == 2)
            await produce(worker.settings, [risky(1, "f-3")])
            await wait_for(lambda: sorted(sources(pd)) == ["f-1", "f-2"], timeout=30)
            await asyncio.sleep(2.5)  # f-3's group wait and ticks passed
            doc = await get(http, f"{worker.web_url}/anomalies?agent=f-3")
    assert sorted(sources(pd)) == ["f-1", "f-2"]
    [third] = doc["anomalies"]
    assert third["inhibited_by"] == ["fleet-outage"] and third["silenced_by"] == []
    assert third["muted"] is True and third["incident_id"] is None
    registry = worker.metrics.registry
    assert registry.get_sample_value("agentwatch_suppressed_total", {"reason": "inhibited"}) == 1
