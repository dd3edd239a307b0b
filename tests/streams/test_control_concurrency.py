"""Concurrent control requests on one agent against a live worker (embedded broker, real HTTP).

Every accepted request is applied on top of the previous one: nothing is lost, versions
strictly increase, and the stored state equals the serial application of the requests in the
order their versions were assigned. ``If-Match`` makes a change a compare-and-set.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from agentwatch.config import Settings
from agentwatch.schemas import ControlState
from agentwatch.schemas.approvals import POLICY_KEY
from agentwatch.schemas.signing import ControlVerifier
from agentwatch.sdk import Monitor, PermissionRevoked
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_pipeline import read_topic, wait_for

pytestmark = pytest.mark.integration


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], **headers: str
) -> tuple[int, dict[str, Any], str | None]:
    body = {"actor": "alice", "force": True, **body}  # force: these agents send no events
    async with http.post(url, json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers.get("ETag")


async def test_concurrent_requests_are_applied_one_after_another(
    settings: Settings, auth: dict[str, str], control_keys: Any
) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        base = f"{worker.web_url}/agents"
        monitor = Monitor.from_settings("conc-1", settings=settings)
        async with aiohttp.ClientSession(headers=auth) as http, monitor:
            # 20 revokes of 20 different tools at once
            tools = [f"tool_{i:02d}" for i in range(20)]
            answers = await asyncio.gather(
                *(post(http, f"{base}/conc-1/revoke", {"reason": t, "actions": [t]}) for t in tools)
            )
            assert [status for status, _, _ in answers] == [200] * 20
            revoke_versions = sorted(doc["version"] for _, doc, _ in answers)
            assert len(set(revoke_versions)) == 20
            assert all(tag == f'"{doc["version"]}"' for _, doc, tag in answers)
            stored = worker.response.control("conc-1")
            assert stored is not None and stored.revoked == tools
            await wait_for(lambda: all(not monitor.allows(t) for t in tools), timeout=10)
            with pytest.raises(PermissionRevoked):
                monitor.check("tool_07")

            # 200 halts and resumes at once
            ops = ["halt" if i % 3 else "resume" for i in range(200)]
            answers = await asyncio.gather(
                *(post(http, f"{base}/conc-1/{op}", {"reason": str(i)}) for i, op in enumerate(ops))
            )
            assert [status for status, _, _ in answers] == [200] * 200
            docs = sorted((doc for _, doc, _ in answers), key=lambda d: d["version"])
            versions = [d["version"] for d in docs]
            assert len(set(versions)) == 200 and versions[0] > revoke_versions[-1]
            halted = False
            for doc in docs:  # serial application in the order versions were assigned
                halted = ops[int(doc["reason"])] == "halt"
                assert doc["halted"] == halted and doc["revoked"] == tools
            stored = worker.response.control("conc-1")
            assert stored is not None
            assert stored.model_dump(mode="json") == docs[-1]
            assert stored.halted == halted and stored.version == versions[-1]
            await wait_for(lambda: monitor.state is not None and monitor.state == stored)
            assert monitor.stats["control_rejected"] == 0

        records = await read_topic(settings, "control", 221, timeout=15)
        audit = await read_topic(settings, "audit", 220, timeout=15)
    # the workers' approval policy shares the control topic under its own key
    on_topic = [ControlState.model_validate_json(r.value) for r in records if r.key != POLICY_KEY]
    assert [r.version for r in on_topic] == sorted(revoke_versions + versions)  # offset order
    verifier = ControlVerifier([control_keys.signer.public_key])
    for record in on_topic:
        verifier.verify(record)
    people = [json.loads(r.value) for r in audit]
    assert sorted(a["control_version"] for a in people) == sorted(revoke_versions + versions)


async def test_if_match_applies_only_on_the_named_version(
    settings: Settings, auth: dict[str, str]
) -> None:
    worker = create_app(settings)
    async with running_app(worker):
        url = f"{worker.web_url}/agents/cas-1"
        async with aiohttp.ClientSession(headers=auth) as http:
            status, doc, tag = await post(
                http, f"{url}/halt", {"reason": "x"}, **{"If-Match": '"3"'}
            )
            assert status == 409 and doc["current_version"] == 0 and tag == '"0"'
            assert "version 0, not 3" in doc["error"]
            assert worker.response.control("cas-1") is None
            status, doc, tag = await post(http, f"{url}/halt", {"reason": "x"}, **{"If-Match": "0"})
            assert status == 200 and doc["halted"] and tag == f'"{doc["version"]}"'
            first = doc["version"]
            async with http.get(url) as resp:
                assert resp.status == 200 and resp.headers["ETag"] == f'"{first}"'
            # two people resume from the same read: one wins, the other is told the new version
            results = await asyncio.gather(
                *(
                    post(http, f"{url}/resume", {"reason": f"r{i}"}, **{"If-Match": f'"{first}"'})
                    for i in range(2)
                )
            )
            statuses = sorted(status for status, _, _ in results)
            assert statuses == [200, 409]
            won = next(doc for status, doc, _ in results if status == 200)
            lost = next(doc for status, doc, _ in results if status == 409)
            assert lost["current_version"] == won["version"] > first
            status, doc, _ = await post(http, f"{url}/halt", {"reason": "x"}, **{"If-Match": "*"})
            assert status == 400 and "If-Match" in doc["error"]
            stored = worker.response.control("cas-1")
            assert stored is not None and not stored.halted and stored.version == won["version"]
        conflicts = worker.metrics.registry.get_sample_value("agentwatch_control_conflicts_total")
        assert conflicts == 2.0
