"""Topic names and creation. ``control`` is compacted: the latest state per agent wins;
``fleets`` too: the latest fleet summaries per fleet and worker."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from agentwatch.config import Settings
from agentwatch.kafka_security import client_options

__all__ = [
    "COMPACTED",
    "SINGLE_PARTITION",
    "TOPIC_NAMES",
    "ensure_topics",
    "partitions_for",
    "topic_configs",
]

log = logging.getLogger(__name__)

TOPIC_NAMES = (
    "actions",
    "deadletter",
    "anomalies",
    "control",
    "notifications",
    "audit",
    "approvals",
    "fleets",
)
#: The responder's input and the outbox have one partition: one worker owns every incident and
#: every delivery (Kafka's group protocol moves them on failure). They carry a few messages a
#: minute, so one partition is ample, and paging order is global.
#: Approval requests and decisions (``approvals``) share one log so the first decision wins.
#: Every worker reads all of ``fleets`` (a few records per fleet and worker every few seconds).
SINGLE_PARTITION = frozenset({"anomalies", "notifications", "approvals", "fleets"})
#: Compacted topics: the latest record per key is what matters.
COMPACTED = frozenset({"control", "fleets"})


def partitions_for(settings: Settings, name: str) -> int:
    """Partition count of one of :data:`TOPIC_NAMES`."""
    return 1 if name in SINGLE_PARTITION else settings.topic_partitions


def topic_configs(name: str, max_message_bytes: int = 1_048_588) -> dict[str, str]:
    """Kafka topic configuration for one of :data:`TOPIC_NAMES`.

    ``max_message_bytes`` is :attr:`Settings.max_message_bytes` (docs/operations.md).
    """
    configs = {"max.message.bytes": str(max_message_bytes)}
    if name in COMPACTED:
        configs["cleanup.policy"] = "compact"
    return configs


async def ensure_topics(settings: Settings, timeout_s: float = 15.0) -> list[str]:
    """Create the agentwatch topics that do not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        request_timeout_ms=int(timeout_s * 1000),
        **client_options(settings),
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                settings.topic(name),
                num_partitions=partitions_for(settings, name),
                replication_factor=settings.replication_factor,
                topic_configs=topic_configs(name, settings.max_message_bytes),
            )
            for name in TOPIC_NAMES
            if settings.topic(name) not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                log.info("topics created concurrently by another process")
        return [t.name for t in wanted]
    finally:
        await admin.close()
