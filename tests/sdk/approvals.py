"""Test helpers for approval gates without a worker: the test plays the worker's part."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from agentwatch.config import Settings
from agentwatch.schemas.approvals import ApprovalDecision, ApprovalRequest
from agentwatch.schemas.signing import ControlSigner

__all__ = ["answer_approvals", "create_approvals_topic"]


async def create_approvals_topic(settings: Settings) -> None:
    """``<prefix>.approvals`` with one partition, as workers create it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics([NewTopic(settings.topic("approvals"), 1, 1)])
    finally:
        await admin.close()


async def answer_approvals(
    settings: Settings, signer: ControlSigner, outcomes: list[tuple[str, str]]
) -> list[ApprovalRequest]:
    """Play the worker: read each request from the approvals topic, answer it signed."""
    consumer = AIOKafkaConsumer(
        settings.topic("approvals"),
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await consumer.start()
    await producer.start()
    seen: list[ApprovalRequest] = []
    try:
        while len(seen) < len(outcomes):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if json.loads(record.value)["type"] != "request":
                        continue
                    request = ApprovalRequest.model_validate_json(record.value)
                    outcome, who = outcomes[len(seen)]
                    seen.append(request)
                    decision = ApprovalDecision(
                        request_id=request.request_id,
                        agent_id=request.agent_id,
                        action=request.action,
                        outcome=outcome,  # type: ignore[arg-type]
                        decided_by=who,
                        via="api",
                        decided_at=datetime.now(UTC),
                    ).signed(signer)
                    await producer.send_and_wait(
                        settings.topic("approvals"),
                        decision.model_dump_json().encode(),
                        key=request.request_id.encode(),
                    )
    finally:
        await consumer.stop()
        await producer.stop()
    return seen
