"""Where a partition's log ends, as a fetch sees it.

A consumer that reads a topic "to the end" (a worker recovering its tables, the fleet
summaries and the SDK catching up with the control topic) asks the broker where the end is
with ``ListOffsets``. Kafka answers with the high-water mark. The embedded broker (Tansu
0.6.0) answers with the base offset of the partition's last record *batch* plus one: exact
while every batch holds one record, short by up to a batch's size otherwise (three batches
of 100 records: 201, not 300). Its fetch responses carry the right high-water mark.

:func:`log_end_offsets` asks both and keeps the larger, so readers are exact on either broker
whatever batch size the producers use; on Kafka the two agree and the fetch costs one round
trip per broker.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka.protocol.fetch import FetchRequest
from aiokafka.structs import TopicPartition

__all__ = ["log_end_offsets"]


async def log_end_offsets(
    consumer: Any, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """The offset after the last record of each partition (an ``AIOKafkaConsumer``'s
    ``end_offsets``, raised to the high-water mark a fetch at that offset reports).

    A partition the fetch answers with an error keeps the ``ListOffsets`` answer.
    """
    wanted = list(partitions)
    ends: dict[TopicPartition, int] = dict(await consumer.end_offsets(wanted))
    client = consumer._client  # aiokafka's client: the same connections and versions
    by_node: dict[int, dict[str, list[tuple[int, int, int]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for tp in wanted:
        leader = client.cluster.leader_for_partition(tp)
        if leader is not None and leader >= 0:
            # one byte is enough: a broker returns the first batch whatever its size, and a
            # partition with nothing at that offset is the exact answer already
            by_node[leader][tp.topic].append((tp.partition, ends.get(tp, 0), 1))
    for node, topics in by_node.items():
        # wait 1 ms for 1 byte: the embedded broker answers a fetch with no wait with
        # nothing, and holds any other for its whole wait
        request = FetchRequest(1, 1, 1, 0, list(topics.items()))
        response = await client.send(node, request)
        for topic, answers in response.topics:
            for partition, error_code, highwater, *_ in answers:
                tp = TopicPartition(topic, partition)
                if error_code == 0 and highwater > ends.get(tp, 0):
                    ends[tp] = int(highwater)
    return ends
