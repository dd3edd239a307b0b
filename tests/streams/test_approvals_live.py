"""Approval gates end to end: an SDK agent, a worker, the fake Slack, the API, the audit log.

A call the rules file says needs approval blocks; the fake Slack receives the message with
Approve / Deny buttons; a signed button click (or the API) decides; the call proceeds within
2 s with ``approved_by`` = the approver, or raises; a timeout denies; every request and
decision is audited; unsigned or badly signed clicks are refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiokafka import AIOKafkaConsumer
from pydantic import SecretStr

from agentwatch.config import Settings
from agentwatch.sdk import ApprovalDenied, ApprovalTimedOut, Monitor, SyncMonitor
from agentwatch.streams.app import WorkerApp, create_app
from agentwatch.streams.runner import running_app
from tests.alerting.fakes import SLACK_SIGNING_SECRET, FakeSlack
from tests.streams.test_cli_control import cli

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: quiet
    rules:
      - alert: Budget
        detector: budget
        params: {max_actions: 100000}
approvals:
  - name: payments
    actions: ["payments.*"]
    risk: [high, critical]
    timeout: 30s
  - name: deploys
    actions: ["deploy.*"]
    timeout: 1s
"""


async def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def read_all(settings: Settings, name: str, predicate: Callable[[list[Any]], bool]) -> list:
    """Every JSON record of a topic, read until ``predicate`` holds (or 10 s)."""
    consumer = AIOKafkaConsumer(
        settings.topic(name),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Any] = []
    try:
        deadline = time.monotonic() + 10
        while not predicate(out) and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                out.extend(json.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return out


@pytest.fixture
async def stack(
    settings: Settings, tmp_path: Path
) -> Any:  # AsyncIterator[tuple[WorkerApp, FakeSlack, Settings]]
    rules = tmp_path / "rules.yml"
    rules.write_text(RULES, encoding="utf-8")
    async with FakeSlack() as slack:
        s = settings.model_copy(
            update={
                "rules_file": rules,
                "slack_webhook_url": SecretStr(slack.webhook_url),
                "slack_signing_secret": SecretStr(SLACK_SIGNING_SECRET),
            }
        )
        worker = create_app(s)
        async with running_app(worker):
            await wait_for(worker.approvals.owns)
            yield worker, slack, s


async def test_approval_round_trip_through_slack_and_api(
    stack: tuple[WorkerApp, FakeSlack, Settings], auth: dict[str, str]
) -> None:
    worker, slack, settings = stack
    interactivity = f"{worker.web_url}/slack/interactivity"
    monitor = Monitor.from_settings("pay-bot", "finance", settings=settings)
    async with monitor:
        await wait_for(lambda: bool(monitor.policy_book.policy.requirements))
        ran: list[str] = []

        @monitor.tool(name="payments.refund", risk="high", target_arg="account")
        async def refund(account: str, amount: int) -> str:
            ran.append(account)
            return f"refunded {amount} to {account}"

        @monitor.tool(name="payments.lookup", risk="low")
        async def lookup(account: str) -> str:
            return account

        # a low-risk call of the same family does not ask
        assert await lookup("acct:0") == "acct:0"
        assert slack.messages == []

        # 1. approved in Slack by alice
        started = time.monotonic()
        call = asyncio.create_task(refund("acct:1", 10))
        await wait_for(lambda: len(slack.messages) == 1, 5)
        asked_s = time.monotonic() - started
        message = slack.messages[0]
        buttons = {b["action_id"]: b for b in slack.buttons(message)}
        assert set(buttons) == {"agentwatch_approve", "agentwatch_deny"}
        assert buttons["agentwatch_approve"]["style"] == "primary"
        assert buttons["agentwatch_deny"]["style"] == "danger"
        request_id = buttons["agentwatch_approve"]["value"]
        assert buttons["agentwatch_deny"]["value"] == request_id
        assert "payments.refund" in message["text"] and not ran
        clicked = time.monotonic()
        status, _ = await slack.click(interactivity, message, "agentwatch_approve", user="alice")
        assert status == 200
        assert await asyncio.wait_for(call, 5) == "refunded 10 to acct:1"
        decided_s = time.monotonic() - clicked
        round_trip_s = time.monotonic() - started
        print(
            f"\napproval round trip: request->Slack {asked_s:.3f}s, click->call proceeds "
            f"{decided_s:.3f}s, total {round_trip_s:.3f}s"
        )
        assert round_trip_s <= 2.0
        await wait_for(lambda: len(slack.responses) == 1, 5)
        assert "Approved by slack:alice" in slack.responses[0]["text"]

        # 2. denied in Slack by bob: a clear exception, the tool does not run
        call = asyncio.create_task(refund("acct:2", 20))
        await wait_for(lambda: len(slack.messages) == 2, 5)
        clicked = time.monotonic()
        status, _ = await slack.click(interactivity, slack.messages[1], "agentwatch_deny", "bob")
        assert status == 200
        with pytest.raises(ApprovalDenied, match="approval denied by slack:bob") as denied:
            await asyncio.wait_for(call, 5)
        assert not isinstance(denied.value, ApprovalTimedOut)
        assert time.monotonic() - clicked <= 2.0
        assert ran == ["acct:1"]
        # a second click on a decided request changes nothing
        denied_id = slack.buttons(slack.messages[1])[0]["value"]
        await wait_for(lambda: worker.approvals.book.get(denied_id).status == "denied", 5)
        status, answer = await slack.click(
            interactivity, slack.messages[1], "agentwatch_approve", "mallory"
        )
        assert status == 200 and answer["ok"] is False and "already denied" in answer["error"]

        # 3. approved through the API by carol
        call = asyncio.create_task(refund("acct:3", 30))
        async with aiohttp.ClientSession(headers=auth) as http:
            pending: list[Any] = []
            deadline = time.monotonic() + 5
            while not pending and time.monotonic() < deadline:
                async with http.get(f"{worker.web_url}/approvals?status=pending") as resp:
                    assert resp.status == 200
                    pending = (await resp.json())["approvals"]
                await asyncio.sleep(0.02)
            assert [p["target"] for p in pending] == ["acct:3"]
            rid = pending[0]["request_id"]
            body = {"actor": "carol", "reason": "ticket OPS-7"}
            async with http.post(f"{worker.web_url}/approvals/{rid}/approve", json=body) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["decided_by"] == "carol"
            assert await asyncio.wait_for(call, 5) == "refunded 30 to acct:3"
            async with http.post(f"{worker.web_url}/approvals/{rid}/deny", json=body) as resp:
                assert resp.status == 409
            async with http.post(f"{worker.web_url}/approvals/nope12345/deny", json=body) as r:
                assert r.status == 404
            async with (
                aiohttp.ClientSession() as anonymous,
                anonymous.get(f"{worker.web_url}/approvals") as resp,
            ):
                assert resp.status == 401

        # 3b. a synchronous agent (SyncMonitor) waits in its own thread, approved via the API
        def sync_agent() -> str:
            with SyncMonitor.from_settings("sync-bot", "finance", settings=settings) as sm:
                deadline = time.monotonic() + 10
                while not sm.monitor.policy_book.policy.requirements:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)

                @sm.tool(name="payments.payout", risk="critical")
                def payout() -> str:
                    return "paid"

                result = payout()
                assert sm.flush(5)
                return result

        thread_call = asyncio.create_task(asyncio.to_thread(sync_agent))
        await wait_for(
            lambda: any(
                e.request.agent_id == "sync-bot" for e in worker.approvals.book.listing("pending")
            ),
            10,
        )
        [pending_sync] = [
            e for e in worker.approvals.book.listing("pending") if e.request.agent_id == "sync-bot"
        ]
        async with (
            aiohttp.ClientSession(headers=auth) as http,
            http.post(
                f"{worker.web_url}/approvals/{pending_sync.request.request_id}/approve",
                json={"actor": "erin"},
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
        assert await asyncio.wait_for(thread_call, 10) == "paid"

        # 4. denied with the CLI (`agentwatch approvals list|deny`) by dave
        call = asyncio.create_task(refund("acct:4", 40))
        await wait_for(lambda: len(worker.approvals.book.listing("pending")) == 1, 5)
        code, out, err = await cli(worker.web_url, "approvals", "list")
        assert code == 0, err
        [row] = [line for line in out.splitlines() if "acct:4" in line]
        rid = row.split()[0]
        assert row.split()[1:4] == ["pending", "pay-bot", "payments.refund"]
        code, out, err = await cli(
            worker.web_url, "approvals", "deny", rid, "--reason", "wrong account", "--actor", "dave"
        )
        assert code == 0, err
        assert out.strip() == f"{rid}: denied by dave (pay-bot payments.refund)"
        with pytest.raises(ApprovalDenied, match="denied by dave"):
            await asyncio.wait_for(call, 5)
        code, out, err = await cli(worker.web_url, "approvals", "approve", rid)
        assert code == 1 and "already denied by dave" in err and "Traceback" not in err
        code, out, err = await cli(worker.web_url, "approvals", "show", rid)
        assert code == 0, err
        lines = dict(line.split(None, 1) for line in out.splitlines())
        assert (lines["status"], lines["agent"], lines["target"]) == ("denied", "pay-bot", "acct:4")
        assert lines["decision"].startswith("denied by dave via api at ")
        assert lines["decision"].endswith("(wrong account)")
        code, out, err = await cli(worker.web_url, "approvals", "show", rid, "--json")
        assert code == 0 and json.loads(out)["decision"]["decided_by"] == "dave"

        # 5. nobody answers: the 1 s deadline denies
        @monitor.tool(name="deploy.prod")
        async def deploy() -> None:
            ran.append("deploy")

        started = time.monotonic()
        with pytest.raises(ApprovalTimedOut, match="nobody approved it in time"):
            await deploy()
        waited = time.monotonic() - started
        assert 1.0 <= waited <= 3.0, waited
        assert "deploy" not in ran
        assert await monitor.flush(5)

    events = await read_all(
        settings,
        "actions",
        lambda out: sum(e["action"] != "payments.lookup" for e in out) >= 6,
    )
    by_target = {e.get("target"): e for e in events if e["action"] == "payments.refund"}
    assert by_target["acct:1"]["status"] == "ok"
    assert by_target["acct:1"]["approved_by"] == "slack:alice"
    assert by_target["acct:2"]["status"] == "denied"
    assert by_target["acct:2"].get("approved_by") is None
    assert by_target["acct:3"]["approved_by"] == "carol"
    assert by_target["acct:4"]["status"] == "denied"
    [payout] = [e for e in events if e["action"] == "payments.payout"]
    assert (payout["agent_id"], payout["approved_by"]) == ("sync-bot", "erin")
    deploys = [e for e in events if e["action"] == "deploy.prod"]
    assert [e["status"] for e in deploys] == ["denied"]

    def audited(out: list[Any]) -> bool:
        return sum(e["action"].startswith("approval_") for e in out) >= 12

    audit = [e for e in await read_all(settings, "audit", audited) if "approval" in e["action"]]
    actions = sorted(e["action"] for e in audit)
    assert actions.count("approval_requested") == 6
    approved = sorted(e["actor"] for e in audit if e["action"] == "approval_approved")
    assert approved == ["carol", "erin", "slack:alice"]
    denials = {e["actor"]: e for e in audit if e["action"] == "approval_denied"}
    assert sorted(denials) == ["dave", "slack:bob"]
    assert denials["slack:bob"]["actor_kind"] == "person"
    assert denials["slack:bob"]["detail"]["via"] == "slack"
    assert denials["dave"]["reason"] == "wrong account"
    registry = worker.metrics.registry
    decisions = {
        (outcome, via): registry.get_sample_value(
            "agentwatch_approval_decisions_total", {"outcome": outcome, "via": via}
        )
        for outcome, via in (("approved", "slack"), ("approved", "api"), ("denied", "slack"))
    }
    assert decisions == {
        ("approved", "slack"): 1.0,
        ("approved", "api"): 2.0,
        ("denied", "slack"): 1.0,
    }
    assert registry.get_sample_value("agentwatch_approval_requests_total") == 6.0
    [expired] = [e for e in audit if e["action"] == "approval_expired"]
    assert expired["actor_kind"] == "system" and expired["actions"] == ["deploy.prod"]
    assert expired["detail"]["waited_s"] >= 1.0


async def test_interactivity_refuses_unsigned_and_forged_clicks(
    stack: tuple[WorkerApp, FakeSlack, Settings],
) -> None:
    worker, slack, _ = stack
    url = f"{worker.web_url}/slack/interactivity"
    message = {
        "blocks": [
            {
                "type": "actions",
                "block_id": "agentwatch_approval:r0000000",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "agentwatch_approve",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": "r0000000",
                    }
                ],
            }
        ]
    }
    payload = slack.interaction(message, "agentwatch_approve", "mallory")
    good_body, good_headers = slack.signed_request(payload)
    cases = {
        "wrong secret": slack.signed_request(payload, secret="not-the-secret"),
        "stale": slack.signed_request(payload, timestamp=int(time.time()) - 600),
        "unsigned": (good_body, {"Content-Type": "application/x-www-form-urlencoded"}),
        "tampered": (good_body.replace(b"mallory", b"alice00"), good_headers),
    }
    async with aiohttp.ClientSession() as http:
        for name, (body, headers) in cases.items():
            async with http.post(url, data=body, headers=headers) as resp:
                assert resp.status == 401, name
        # correctly signed, but no such request: accepted by Slack's rules, decides nothing
        async with http.post(url, data=good_body, headers=good_headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["ok"] is False
    assert worker.approvals.book.entries == {}
