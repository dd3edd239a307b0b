"""SIGKILL the worker between an anomaly and its page; after a restart there is exactly one page."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agentwatch.config import Settings
from agentwatch.streams.runner import EMBEDDED_OVERRIDES
from tests.alerting.fakes import PAGERDUTY_ROUTING_KEY, FakePagerDuty
from tests.conftest import API_TOKEN
from tests.streams.test_pipeline import encoded, event, produce
from tests.streams.test_response import read_topic, risky, rules_file, wait_for

pytestmark = pytest.mark.integration


def start_worker(
    settings: Settings,
    tmp_path: Path,
    pd: FakePagerDuty,
    *,
    module: str = "agentwatch.cli",
    **extra: Any,
) -> Any:
    """``python -m <module> worker`` in its own session, logging to ``tmp_path/worker.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    values: dict[str, Any] = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "app_id": settings.app_id,
        "topic_prefix": settings.topic_prefix,
        "topic_partitions": settings.topic_partitions,
        **EMBEDDED_OVERRIDES,
        "store": "rocksdb",
        "data_dir": tmp_path / "state",
        "web_port": 0,
        "otlp_port": 0,  # several workers on one host: each its own free OTLP port
        "commit_interval_s": 0.5,
        "rules_file": rules_file(tmp_path),
        "pagerduty_url": pd.url,
        "pagerduty_routing_key": PAGERDUTY_ROUTING_KEY,
        "routes": '{"critical": ["pagerduty"]}',
        "notify_max_backoff_s": 0.5,
        "incident_resolve_after_s": 600,
        "log_level": "INFO",
        "control_signing_key_file": settings.control_signing_key_file,
        **extra,
    }
    env.update({f"AGENTWATCH_{k.upper()}": str(v) for k, v in values.items()})
    log = (tmp_path / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", module, "worker"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def kill(proc: Any) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


async def audit_has(settings: Settings, action: str) -> bool:
    return any(a["action"] == action for a in await read_topic(settings, "audit", timeout=0.5))


@pytest.mark.parametrize("moment", ["incident_open", "outbox"])
async def test_sigkill_between_anomaly_and_page_still_pages_once(
    settings: Settings, tmp_path: Path, moment: str
) -> None:
    async with FakePagerDuty() as pd:
        if moment == "outbox":
            pd.fail_for(3600.0, 503)  # down: the page waits in the outbox
        worker = start_worker(settings, tmp_path, pd, incident_group_wait_s=4.0)
        try:
            await produce(settings, [risky(i, "crashy") for i in range(3)])
            deadline = time.monotonic() + 60
            if moment == "incident_open":
                while not await audit_has(settings, "incident_open"):
                    assert time.monotonic() < deadline, "no incident opened"
                # killed inside the group wait: the incident exists, the page does not
            else:
                while not pd.requests:
                    assert time.monotonic() < deadline, "no delivery attempted"
                    await asyncio.sleep(0.1)
            kill(worker)
            assert pd.accepted("trigger") == []
            pd.failures.clear()  # PagerDuty is back
            worker = start_worker(settings, tmp_path, pd, incident_group_wait_s=4.0)
            await wait_for(lambda: len(pd.accepted("trigger")) >= 1, timeout=90)
            await asyncio.sleep(8.0)  # a duplicate would arrive in this time
        finally:
            if worker.poll() is None:
                kill(worker)
    assert len(pd.accepted("trigger")) == 1, (tmp_path / "worker.log").read_text()[-3000:]


async def test_two_workers_forward_control_requests_to_the_responder(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    import aiohttp

    from agentwatch.streams.broker import free_port

    ports = [free_port("127.0.0.1"), free_port("127.0.0.1")]
    async with FakePagerDuty() as pd:
        procs = []
        for n, port in enumerate(ports):
            home = tmp_path / f"w{n}"
            home.mkdir()
            procs.append(start_worker(settings, home, pd, web_port=port, api_token=API_TOKEN))
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            async with aiohttp.ClientSession(headers=auth) as http:

                async def halt(url: str, reason: str) -> tuple[int, dict[str, Any]]:
                    body = {"actor": "dana", "reason": reason}
                    try:
                        async with http.post(f"{url}/agents/fwd-1/halt", json=body) as r:
                            return r.status, await r.json(content_type=None)
                    except aiohttp.ClientError:
                        return 0, {}

                # both workers up and in the group before the requests
                deadline = time.monotonic() + 90
                for url in urls:
                    while True:
                        assert time.monotonic() < deadline, "workers never started"
                        try:
                            async with http.get(f"{url}/healthz") as r:
                                if r.status == 200:
                                    break
                        except aiohttp.ClientError:
                            pass
                        await asyncio.sleep(0.5)
                await asyncio.sleep(8.0)  # the rebalance that admits the second worker
                # eight agents of fleet "support", spread over both workers' partitions
                await produce(settings, [encoded(event(0, f"fwd-{i}")) for i in range(8)])
                versions: list[int] = []
                while len(versions) < 2:
                    assert time.monotonic() < deadline, "workers never settled"
                    status, doc = await halt(urls[len(versions)], f"via {len(versions)}")
                    if status == 200:
                        versions.append(doc["version"])
                    else:
                        await asyncio.sleep(0.5)
                lists = []
                for url in urls:
                    async with http.get(f"{url}/agents/fwd-1/response") as r:
                        assert r.status == 200
                        lists.append((await r.json())["control"])
                # every worker lists every worker's agents, with the responder's control state
                fleet = [f"fwd-{i}" for i in range(8)]
                for url in urls:
                    while True:
                        async with http.get(f"{url}/agents?fleet=support") as r:
                            assert r.status == 200
                            rows = (await r.json())["agents"]
                        if [row["agent_id"] for row in rows] == fleet:
                            break
                        assert time.monotonic() < deadline, rows
                        await asyncio.sleep(0.5)
                    assert [row["halted"] for row in rows] == [False, True] + [False] * 6
                    # a typo'd id is refused by either worker, naming the id it probably meant
                    typo = {"actor": "dana", "reason": "typo"}
                    async with http.post(f"{url}/agents/fdw-2/halt", json=typo) as r:
                        assert r.status == 404
                        refused = await r.json()
                    assert refused["suggestions"][0] == "fwd-2", refused
                # the fleet kill switch through one worker, undone through the other
                body = {"actor": "dana", "reason": "fleet drill"}
                async with http.post(f"{urls[1]}/fleets/support/halt", json=body) as r:
                    assert r.status == 200, await r.text()
                    halted = await r.json()
                async with http.post(f"{urls[0]}/fleets/support/resume", json=body) as r:
                    assert r.status == 200, await r.text()
                    resumed = await r.json()
                # a silence made through one worker is seen through the other; anomalies
                # listed through either carry evidence held by both workers' partitions
                ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
                silence = {
                    "matchers": ['fleet="support"'],
                    "ends_at": ends,
                    "created_by": "dana",
                    "comment": "drill",
                }
                async with http.post(f"{urls[0]}/silences", json=silence) as r:
                    assert r.status == 201, await r.text()
                    silence_id = (await r.json())["silence_id"]
                async with http.get(f"{urls[1]}/silences") as r:
                    seen = [s["silence_id"] for s in (await r.json())["silences"]]
                await produce(settings, [risky(1, f"fwd-{i}") for i in range(8)])
                recorded: list[dict[str, Any]] = []
                while len(recorded) < 8:
                    assert time.monotonic() < deadline + 60, recorded
                    await asyncio.sleep(0.5)
                    async with http.get(f"{urls[1]}/anomalies") as r:
                        recorded = (await r.json())["anomalies"]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    kill(proc)
    # one owner applied both (the other forwarded): the second version builds on the first
    applied = [
        (tmp_path / f"w{n}" / "worker.log").read_text().count("control: halt fwd-1")
        for n in range(2)
    ]
    assert sorted(applied) == [0, 2]
    assert versions[1] > versions[0]
    assert lists[0] == lists[1] and lists[0]["version"] == versions[1]
    assert [s["agent_id"] for s in halted["changed"]] == [a for a in fleet if a != "fwd-1"]
    assert halted["unchanged"] == ["fwd-1"] and "unreachable_workers" not in halted
    assert sorted(s["agent_id"] for s in resumed["changed"]) == fleet
    assert not any(s["halted"] for s in resumed["changed"])
    assert seen == [silence_id]
    assert sorted(a["agent_id"] for a in recorded) == fleet
    assert all(a["silenced_by"] == [silence_id] for a in recorded)
    held = [(e["event_id"], e["held"]) for a in recorded for e in a["evidence_events"]]
    assert sorted(held) == [(f"fwd-{i}-1", True) for i in range(8)]


async def test_silences_history_and_evidence_survive_a_sigkill(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    import aiohttp

    from agentwatch.streams.broker import free_port

    async with FakePagerDuty() as pd, aiohttp.ClientSession(headers=auth) as http:
        deadline = time.monotonic() + 120

        async def call(method: str, url: str, body: Any = None) -> tuple[int, Any]:
            """The answer once the responder is assigned (retries while starting)."""
            while True:
                assert time.monotonic() < deadline, f"{method} {url} never answered"
                try:
                    async with http.request(method, url, json=body) as r:
                        if r.status != 503:
                            return r.status, await r.json(content_type=None)
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.5)

        port = free_port("127.0.0.1")
        worker = start_worker(settings, tmp_path, pd, web_port=port, api_token=API_TOKEN)
        try:
            url = f"http://127.0.0.1:{port}"
            ends = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            silence = {
                "matchers": ['agent="durable"'],
                "ends_at": ends,
                "created_by": "erin",
                "comment": "restart drill",
            }
            status, created = await call("POST", f"{url}/silences", silence)
            assert status == 201, created
            await produce(settings, [risky(1, "durable")])
            before: list[Any] = []
            while not before:
                assert time.monotonic() < deadline, "no anomaly recorded"
                await asyncio.sleep(0.5)
                before = (await call("GET", f"{url}/anomalies?agent=durable"))[1]["anomalies"]
            kill(worker)
            port = free_port("127.0.0.1")
            worker = start_worker(settings, tmp_path, pd, web_port=port, api_token=API_TOKEN)
            url = f"http://127.0.0.1:{port}"
            _, silences = await call("GET", f"{url}/silences")
            _, after = await call("GET", f"{url}/anomalies?agent=durable")
            _, audit = await call("GET", f"{url}/audit?agent=durable")
        finally:
            if worker.poll() is None:
                kill(worker)
    assert [s["silence_id"] for s in silences["silences"]] == [created["silence_id"]]
    assert after["anomalies"] == before  # the record and its evidence, from the changelogs
    [anomaly] = after["anomalies"]
    assert anomaly["silenced_by"] == [created["silence_id"]]
    assert [(e["event_id"], e["held"]) for e in anomaly["evidence_events"]] == [("durable-1", True)]
    assert "suppressed" in [a["action"] for a in audit["audit"]]
    assert pd.requests == []
