"""Approval gates in the MCP gateway: a real MCP client, ``agentwatch mcp-proxy``, a worker.

The worker publishes the rules file's approval policy; the proxy (a subprocess in front of the
toy stdio server) holds a matching ``tools/call`` until on-call decides through the API: an
approved call reaches the server and its event carries the approver, a denied or timed-out one
is answered with a tool error and never reaches the server.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from agentwatch.config import Settings
from agentwatch.mcp.gate import REFUSAL_META_KEY
from agentwatch.schemas.approvals import POLICY_KEY
from agentwatch.streams.app import create_app
from agentwatch.streams.broker import free_port
from agentwatch.streams.runner import running_app
from tests.mcp.helpers import (
    ROOT,
    by_action,
    proxy_command,
    proxy_env,
    ran,
    stdio_session,
    text_of,
    wait_port,
    write_risk_map,
)
from tests.mcp.test_gateway import toy_http_server
from tests.sdk.test_monitor import read_actions

pytestmark = pytest.mark.integration

RULES = """
groups: []
approvals:
  - name: outbound-mail
    actions: [send_email]
    risk: [high]
    timeout: 30s
  - name: quick
    actions: [fail]
    timeout: 1s
"""


async def policy_published(settings: Settings) -> None:
    consumer = AIOKafkaConsumer(
        settings.topic("control"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            if any(r.key == POLICY_KEY for records in batch.values() for r in records):
                return
        raise AssertionError("no approval policy on the control topic")
    finally:
        await consumer.stop()


DECIDED: set[str] = set()


async def decide(url: str, auth: dict[str, str], agent: str, op: str, actor: str) -> float:
    """Wait for the agent's new pending request, decide it; the time the decision was made.

    (A request just decided may still show as pending until the worker reads its decision
    back: those are skipped.)"""
    async with aiohttp.ClientSession(headers=auth) as http:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            async with http.get(f"{url}/approvals?status=pending") as resp:
                pending = [
                    a
                    for a in (await resp.json())["approvals"]
                    if a["agent_id"] == agent and a["request_id"] not in DECIDED
                ]
            if pending:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("no pending approval")
        rid = pending[0]["request_id"]
        DECIDED.add(rid)
        decided = time.monotonic()
        body = {"actor": actor, "reason": "checked"}
        async with http.post(f"{url}/approvals/{rid}/{op}", json=body) as resp:
            assert resp.status == 200, await resp.text()
        return decided


async def test_gateway_holds_calls_until_approved(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    s = settings.model_copy(update={"rules_file": rules})
    agent = "mcp-appr-1"
    worker = create_app(s)
    async with running_app(worker):
        await policy_published(s)
        async with stdio_session(s, agent, tmp_path) as (session, calls, _):
            assert not (await session.call_tool("echo", {"text": "no approval needed"})).is_error

            mail = asyncio.create_task(
                session.call_tool("send_email", {"to": "a@b.c", "body": "x"})
            )
            # the client's other requests keep flowing while one waits
            assert text_of(await session.call_tool("echo", {"text": "meanwhile"})) == "meanwhile"
            decided = await decide(worker.web_url, auth, agent, "approve", "carol")
            result = await asyncio.wait_for(mail, 10)
            approve_s = time.monotonic() - decided
            assert not result.is_error and text_of(result) == "sent 1 characters to a@b.c"
            assert approve_s < 2.0, approve_s
            assert ran(calls) == ["echo", "echo", "send_email"]

            mail = asyncio.create_task(
                session.call_tool("send_email", {"to": "x@y.z", "body": "y"})
            )
            await decide(worker.web_url, auth, agent, "deny", "dave")
            denied = await asyncio.wait_for(mail, 10)
            assert denied.is_error and text_of(denied).startswith(
                "not approved by agentwatch: denied by dave"
            )
            assert denied.meta is not None
            assert denied.meta[REFUSAL_META_KEY]["reason"] == "not_approved"

            started = time.monotonic()
            slow = await session.call_tool("fail", {"reason": "never asked"})
            assert slow.is_error and "nobody approved it in time" in text_of(slow)
            assert slow.meta is not None
            assert slow.meta[REFUSAL_META_KEY]["reason"] == "approval_timeout"
            assert 1.0 <= time.monotonic() - started < 4.0
            assert ran(calls) == ["echo", "echo", "send_email"]  # the refused calls never ran

    events = by_action(await read_actions(s, 5))
    sent = {e.target: e for e in events["send_email"]}
    assert (sent["a@b.c"].status, sent["a@b.c"].approved_by) == ("ok", "carol")
    assert sent["a@b.c"].attributes["approval_id"]
    assert (sent["x@y.z"].status, sent["x@y.z"].approved_by) == ("denied", None)
    assert [e.status for e in events["fail"]] == ["denied"]


async def test_http_gateway_holds_calls_until_approved(
    settings: Settings, tmp_path: Path, auth: dict[str, str]
) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    s = settings.model_copy(update={"rules_file": rules})
    agent = "mcp-appr-http"
    record: list[str] = []
    worker = create_app(s)
    async with running_app(worker), toy_http_server(record) as upstream:
        await policy_published(s)
        port = free_port()
        with (tmp_path / "proxy-http.txt").open("w") as errlog:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *proxy_command(agent, write_risk_map(tmp_path)),
                "--listen",
                f"127.0.0.1:{port}",
                "--upstream",
                upstream,
                cwd=str(ROOT),
                env={**proxy_env(s), "PATH": "/usr/bin:/bin"},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=errlog,
            )
            try:
                await wait_port(port)
                async with (
                    streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    mail = asyncio.create_task(
                        session.call_tool("send_email", {"to": "h@t.tp", "body": "hey"})
                    )
                    decided = await decide(worker.web_url, auth, agent, "approve", "erin")
                    sent = await asyncio.wait_for(mail, 10)
                    assert time.monotonic() - decided < 2.0
                    assert text_of(sent) == "sent 3 characters to h@t.tp"
                    slow = await session.call_tool("fail", {"reason": "never asked"})
                    assert slow.is_error and slow.meta is not None
                    assert slow.meta[REFUSAL_META_KEY]["reason"] == "approval_timeout"
                    assert record == ["send_email"]  # the refused call never reached it
            finally:
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 15)

    events = by_action(await read_actions(s, 2))
    [mail_event] = events["send_email"]
    assert (mail_event.status, mail_event.approved_by) == ("ok", "erin")
    assert mail_event.attributes["mcp.transport"] == "http"
    assert [e.status for e in events["fail"]] == ["denied"]
