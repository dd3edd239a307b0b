"""The response path end to end: embedded broker, worker, SDK, control API, fake PagerDuty/Slack."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.sdk import AgentHalted, Monitor, PermissionRevoked
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.alerting.fakes import PAGERDUTY_ROUTING_KEY, FakePagerDuty, FakeSlack
from tests.streams.test_pipeline import encoded, event, produce, wait_for
from tests.streams.test_pipeline import read_topic as read_records

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: test
    rules:
      - alert: Unapproved
        detector: policy
        cooldown: 0s
        labels: {severity: critical}
        annotations: {runbook_url: "https://runbooks.example.com/unapproved"}
        action: {type: revoke}
"""


def rules_file(tmp_path: Path, text: str = RULES) -> Path:
    path = tmp_path / "rules.yml"
    path.write_text(text)
    return path


def paging(
    settings: Settings, tmp_path: Path, pd: FakePagerDuty, slack: FakeSlack, **kw: Any
) -> Settings:
    values: dict[str, Any] = {
        "rules_file": rules_file(tmp_path),
        "pagerduty_url": pd.url,
        "pagerduty_routing_key": PAGERDUTY_ROUTING_KEY,
        "slack_webhook_url": slack.webhook_url,
        "notify_max_backoff_s": 0.5,
        "incident_group_wait_s": 1.0,
        "incident_resolve_after_s": 3.0,
    }
    values.update(kw)
    return settings.replace(**values)


async def read_topic(settings: Settings, name: str, timeout: float = 3.0) -> list[dict[str, Any]]:
    """Every JSON record on a topic (reads for ``timeout`` seconds)."""
    return [json.loads(r.value) for r in await read_records(settings, name, 10**9, timeout)]


def risky(i: int, agent: str) -> tuple[bytes, bytes]:
    return encoded(event(i, agent, action="drop_table", risk="critical", target="db:users"))


async def test_twenty_anomalies_make_one_page_and_one_resolve(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as slack:
        worker = create_app(paging(settings, tmp_path, pd, slack))
        async with running_app(worker):
            await produce(worker.settings, [risky(i, "noisy") for i in range(20)])
            await wait_for(lambda: len(pd.accepted("resolve")) == 1, timeout=40)
            await asyncio.sleep(1.5)  # anything else would have arrived by now
            async with aiohttp.ClientSession(headers=auth) as http:
                async with http.get(f"{worker.web_url}/incidents?status=resolved") as resp:
                    assert resp.status == 200
                    incidents = (await resp.json())["incidents"]
                async with http.get(f"{worker.web_url}/agents/noisy") as resp:
                    agent = await resp.json()
        audit = await read_topic(worker.settings, "audit")
    triggers, resolves = pd.accepted("trigger"), pd.accepted("resolve")
    assert len(triggers) == 1 and len(resolves) == 1
    assert triggers[0]["dedup_key"] == resolves[0]["dedup_key"] == incidents[0]["incident_id"]
    assert triggers[0]["payload"]["severity"] == "critical"
    assert triggers[0]["payload"]["source"] == "noisy"
    assert any(link["href"].startswith("https://runbooks") for link in triggers[0]["links"])
    assert len(slack.messages) <= 3
    assert [i["anomaly_count"] for i in incidents] == [20]
    assert agent["control"]["revoked"] == ["drop_table"]
    assert agent["control"]["updated_by"] == "Unapproved"
    revokes = [a for a in audit if a["action"] == "revoke"]
    assert len(revokes) == 1 and revokes[0]["actor"] == "Unapproved"
    delivered = [a for a in audit if a["action"] == "delivered"]
    assert sorted(a["detail"]["notifier"] for a in delivered) == [
        "pagerduty",
        "pagerduty",
        "slack",
        "slack",
    ]


async def test_trigger_arrives_once_after_a_minute_of_pagerduty_errors(
    settings: Settings, tmp_path: Path
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as slack:
        pd.fail_for(30.0, 500)
        pd.fail_for(30.0, 429, retry_after=1)
        worker = create_app(paging(settings, tmp_path, pd, slack, incident_resolve_after_s=600))
        async with running_app(worker):
            started = time.monotonic()
            await produce(worker.settings, [risky(i, "during-outage") for i in range(3)])
            await wait_for(lambda: len(pd.accepted("trigger")) == 1, timeout=120)
            recovered_after = time.monotonic() - started
            await asyncio.sleep(3.0)
    failed = [r for r in pd.requests if r.status in (500, 429)]
    assert len(pd.accepted("trigger")) == 1
    assert recovered_after >= 59.0
    assert {r.status for r in failed} == {500, 429} and len(failed) >= 10
    assert len(slack.messages) == 1  # Slack was up: not held back by PagerDuty's outage


async def test_control_api_needs_the_token_and_checks_bodies(
    settings: Settings, auth: dict[str, str]
) -> None:
    worker = create_app(settings)
    url = None
    async with running_app(worker):
        url = worker.web_url
        body = {"actor": "mallory", "reason": "test"}
        async with aiohttp.ClientSession() as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
                async with http.post(f"{url}/agents/a9/halt", json=body, headers=headers) as r:
                    assert r.status == 401
                    assert "token" in (await r.json())["error"]
                async with http.get(f"{url}/incidents", headers=headers) as r:
                    assert r.status == 401
            async with http.get(f"{url}/healthz") as r:
                assert r.status == 200  # health stays open
        async with aiohttp.ClientSession(headers=auth) as http:
            async with http.get(f"{url}/agents/a9") as r:
                assert r.status == 404  # nothing changed it
            bad = [
                (b"{not json", "not valid JSON"),
                (b"[]", "JSON object"),
                (json.dumps({"actor": "alice"}).encode(), "reason"),
                (json.dumps({"actor": "a", "reason": "r", "actions": "x"}).encode(), "actions"),
                (json.dumps({"actor": "a", "reason": "r", "admin": True}).encode(), "admin"),
            ]
            for raw, why in bad:
                async with http.post(f"{url}/agents/a9/halt", data=raw) as r:
                    assert r.status == 400
                    doc = await r.json()
                    assert why in json.dumps(doc)
            async with http.post(f"{url}/agents/a9/revoke", json=body) as r:
                assert r.status == 400 and "actions" in (await r.json())["error"]
            async with http.post(f"{url}/agents/a9/explode", json=body) as r:
                assert r.status == 404
            async with http.get(f"{url}/agents/a9") as r:
                assert r.status == 404
            # a well-formed change of an agent the monitor has never seen: refused, one line
            async with http.post(f"{url}/agents/a9/halt", json=body) as r:
                assert r.status == 404
                doc = await r.json()
            assert doc["reason"] == "unknown_agent" and doc["suggestions"] == []
            assert doc["error"] == (
                "unknown agent 'a9' (the monitor has never seen it) — pass --force to control "
                "it anyway"
            )
            assert worker.response.control("a9") is None


async def test_on_call_halts_revokes_and_restores_an_sdk_agent(
    settings: Settings, auth: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    worker = create_app(settings)
    async with running_app(worker):
        url = worker.web_url
        monitor = Monitor.from_settings("sdk-1", "ops", settings=settings)
        assert monitor.control_verifier is not None  # obeys only records the worker signed
        async with monitor, aiohttp.ClientSession(headers=auth) as http:

            @monitor.tool
            async def search(q: str) -> str:
                return q

            @monitor.tool
            async def send_email(to: str) -> str:
                return to

            assert await search("x") == "x"
            assert await monitor.flush(5.0)  # the worker knows an agent once it saw an event
            await wait_for(lambda: "sdk-1" in worker.stage.engine.baselines)

            async def post(path: str, **body: Any) -> dict[str, Any]:
                async with http.post(f"{url}{path}", json={"actor": "alice", **body}) as r:
                    assert r.status == 200, await r.text()
                    return dict(await r.json())

            before_ms = int(time.time() * 1000)
            state = await post("/agents/sdk-1/revoke", reason="phish", actions=["send_email"])
            assert state["revoked"] == ["send_email"]
            assert before_ms <= state["version"] <= int(time.time() * 1000)  # max(0 + 1, now ms)
            versions = [state["version"]]
            await wait_for(lambda: not monitor.allows("send_email"), timeout=10)
            with pytest.raises(PermissionRevoked):
                await send_email("bob")
            assert await search("still") == "still"

            state = await post("/agents/sdk-1/halt", reason="runaway")
            assert state["halted"] and state["version"] > versions[-1]
            versions.append(state["version"])
            await wait_for(lambda: not monitor.allows("search"), timeout=10)
            with pytest.raises(AgentHalted):
                await search("y")

            versions.append((await post("/agents/sdk-1/resume", reason="fixed"))["version"])
            state = await post("/agents/sdk-1/grant", reason="ok", actions=[])
            versions.append(state["version"])
            assert not state["halted"] and state["revoked"] == []
            assert versions == sorted(set(versions))  # strictly increasing
            await wait_for(lambda: monitor.allows("send_email"), timeout=10)
            assert await send_email("bob") == "bob"
            assert monitor.state is not None and monitor.state.version == versions[-1]
            assert monitor.state.key_id == worker.response.signer.key_id
            assert monitor.stats["control_rejected"] == 0
        audit = await read_topic(settings, "audit")
    token = auth["Authorization"].split()[1]
    assert token not in caplog.text and token not in json.dumps(audit)
    assert "control: halt sdk-1 by alice" in caplog.text  # who and why are logged, not the token
    people = [(a["action"], a["actor"], a["reason"]) for a in audit if a["actor_kind"] == "person"]
    assert people == [
        ("revoke", "alice", "phish"),
        ("halt", "alice", "runaway"),
        ("resume", "alice", "fixed"),
        ("grant", "alice", "ok"),
    ]


async def test_ack_and_resolve_reach_pagerduty(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    async with FakePagerDuty() as pd, FakeSlack() as slack:
        worker = create_app(paging(settings, tmp_path, pd, slack, incident_resolve_after_s=600))
        async with running_app(worker):
            await produce(worker.settings, [risky(i, "acked") for i in range(2)])
            await wait_for(lambda: len(pd.accepted("trigger")) == 1)
            key = pd.accepted("trigger")[0]["dedup_key"]
            async with aiohttp.ClientSession(headers=auth) as http:
                body = {"actor": "bob", "reason": "looking"}
                async with http.post(f"{worker.web_url}/incidents/{key}/ack", json=body) as r:
                    assert r.status == 200
                    assert (await r.json())["status"] == "acknowledged"
                await wait_for(lambda: len(pd.accepted("acknowledge")) == 1)
                body = {"actor": "bob", "reason": "rolled back"}
                async with http.post(f"{worker.web_url}/incidents/{key}/resolve", json=body) as r:
                    assert r.status == 200
                    doc = await r.json()
                    assert doc["status"] == "resolved" and doc["resolved_by"] == "bob"
                await wait_for(lambda: len(pd.accepted("resolve")) == 1)
                async with http.post(f"{worker.web_url}/incidents/nope/ack", json=body) as r:
                    assert r.status == 404
    assert [e["dedup_key"] for e in pd.events] == [key, key, key]
    assert [e["event_action"] for e in pd.events] == ["trigger", "acknowledge", "resolve"]
