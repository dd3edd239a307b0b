"""Where a partition's log ends: the embedded broker's ``ListOffsets`` against a fetch."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from agentwatch.log_end import log_end_offsets
from agentwatch.streams.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


async def test_the_end_of_a_log_written_in_batches_is_its_last_record_plus_one(
    broker: EmbeddedBroker,
) -> None:
    topic = f"log-end-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
    await producer.start()
    try:
        for _ in range(3):  # three batches of 100 records on partition 0
            sent = [await producer.send(topic, b"v", partition=0) for _ in range(100)]
            await asyncio.gather(*sent)
        await producer.send_and_wait(topic, b"one", partition=1)  # a batch of one
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        listed = await consumer.end_offsets(partitions)
        ends = await log_end_offsets(consumer, partitions)
    finally:
        await consumer.stop()
    assert ends == {partitions[0]: 300, partitions[1]: 1, partitions[2]: 0}
    # what the broker's ListOffsets says, for the record: never more than the end
    assert all(listed[tp] <= ends[tp] for tp in partitions)
