"""ApprovalStage's Slack posts over in-memory topics and the loopback fake Slack: an outage
delays the approval message, never drops or doubles it, and a worker taking over the
partition posts what its predecessor could not."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import orjson

from agentwatch.schemas.approvals import ApprovalPolicy
from agentwatch.schemas.signing import ControlSigner
from agentwatch.streams.approvals import ApprovalStage
from tests.alerting.fakes import SLACK_WEBHOOK_PATH, FakeSlack
from tests.fixtures import approval_request
from tests.streams.test_response_stage import FakeEvent as _AnomalyEvent
from tests.streams.test_response_stage import SlowTopic


class FakeEvent(_AnomalyEvent):
    """A record of the approvals topic as the stream agent sees it."""

    def __init__(self, value: bytes, offset: int) -> None:
        super().__init__(value, offset)
        self.value = value
        self.message.topic = "t.approvals"


def make_stage(slack: FakeSlack, signer: ControlSigner, table: dict[bytes, bytes]) -> ApprovalStage:
    rng = random.Random(1)
    return ApprovalStage(
        topics={n: SlowTopic(rng) for n in ("approvals", "audit", "control")},
        table=table,
        signer=signer,
        policy=ApprovalPolicy(requirements=[]),
        slack_webhook_url=slack.url + SLACK_WEBHOOK_PATH,
        owns=lambda: True,
    )


def request(rid: str) -> bytes:
    return approval_request(rid).model_dump_json().encode()


async def settle(stage: ApprovalStage, until: Callable[[], bool], seconds: float) -> None:
    """Run the stage's timer (and feed back what it logs on its own topic) until ``until``."""
    topic = stage.topics["approvals"]
    fed = 0
    deadline = asyncio.get_running_loop().time() + seconds
    while not until():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        for _, value in topic.sent[fed:]:  # the log, read back as the stream agent would
            await stage.process(FakeEvent(value, 1000 + fed))
            fed += 1
        await stage.tick()
        await asyncio.sleep(0.05)


def posted(stage: ApprovalStage, rid: str) -> bool:
    entry = stage.table.get(rid.encode())
    return entry is not None and bool(orjson.loads(entry)["posted"])


async def test_a_slack_outage_delays_the_approval_message_and_sends_it_once() -> None:
    signer = ControlSigner.generate()
    async with FakeSlack() as slack:
        slack.fail_next(2, 503)
        stage = make_stage(slack, signer, {})
        await stage.process(FakeEvent(request("req00001"), 1))
        await settle(stage, lambda: posted(stage, "req00001"), 15)
        await stage.aclose()
        assert len(slack.messages) == 1
        assert "payments.refund" in slack.messages[0]["text"]
        assert len([r for r in slack.requests if r.path == SLACK_WEBHOOK_PATH]) == 3
        for _ in range(5):  # posted: later ticks post nothing more
            await stage.tick()
        await asyncio.sleep(0.2)
        assert len(slack.messages) == 1


async def test_a_worker_taking_over_posts_what_its_predecessor_could_not() -> None:
    signer = ControlSigner.generate()
    table: dict[bytes, bytes] = {}
    async with FakeSlack() as slack:
        slack.fail_for(60, 503)  # Slack down while the first worker holds the partition
        first = make_stage(slack, signer, table)
        await first.process(FakeEvent(request("req00002"), 1))
        await first.process(FakeEvent(request("req00003"), 2))
        await asyncio.sleep(0.3)
        await first.aclose()
        assert slack.messages == [] and not posted(first, "req00002")
        slack.failures.clear()  # Slack is back; a new worker restores the same table
        second = make_stage(slack, signer, table)
        await settle(second, lambda: posted(second, "req00002") and posted(second, "req00003"), 10)
        await second.aclose()
        texts = sorted(m["text"] for m in slack.messages)
        assert len(texts) == 2
        third = make_stage(slack, signer, table)  # and the one after posts nothing again
        for _ in range(5):
            await third.tick()
        await asyncio.sleep(0.2)
        await third.aclose()
        assert len(slack.messages) == 2


async def test_a_forged_posted_record_is_refused() -> None:
    signer = ControlSigner.generate()
    async with FakeSlack() as slack:
        slack.fail_for(60, 503)
        stage = make_stage(slack, signer, {})
        await stage.process(FakeEvent(request("req00004"), 1))
        forged = orjson.dumps(
            {"type": "posted", "request_id": "req00004", "posted_at": "2026-12-05T00:00:00Z"}
        )
        await stage.process(FakeEvent(forged, 2))
        await stage.aclose()
        assert not posted(stage, "req00004")
        assert stage.metrics.refused._value.get() == 1
