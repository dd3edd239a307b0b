"""Follow the compacted control topic and feed its records to :class:`ControlBook` s.

One consumer (no group: every partition, from the start) reads the topic to its end, signals
``ready``, then keeps following it; it reconnects with backoff whatever the broker does. Books
are routed by record key, so one follower can serve every agent of a process (a gateway in
front of many agents) as well as the single agent of a :class:`~agentwatch.sdk.Monitor`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer

from agentwatch.log_end import log_end_offsets
from agentwatch.sdk._support import Backoff, RateLimited, describe_error, stop_client

__all__ = ["TOPIC_POLL_S", "ControlFollower", "RecordSink"]

log = logging.getLogger("agentwatch.sdk")

TOPIC_POLL_S = 2.0
"""How often to look again for a control topic that does not exist yet."""


class RecordSink(Protocol):
    """What a follower feeds: a :class:`ControlBook`, or the approval policy's book."""

    def apply_record(self, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """Apply one record (never raises)."""


class ControlFollower:
    """Reads ``topic`` forever and applies each record to the book of its key.

    Parameters
    ----------
    bootstrap
        Comma-separated ``host:port`` list of Kafka brokers.
    topic
        The compacted control topic (``<prefix>.control``).
    books
        The books to feed, by record key (the agent id as UTF-8). A record without a key is
        handed to every book (each counts it as malformed); other keys are skipped.
    kafka_options
        Connection settings of the consumer (security, client id, timeouts); never logged.
    fetch_max_wait_ms
        Long-poll time of fetches; bounds the halt-to-enforcement latency.
    stop_timeout
        How long stopping the consumer may take.
    label
        Who follows, for log lines (``"agent bot-1"``).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        books: Mapping[bytes, RecordSink],
        *,
        kafka_options: Mapping[str, Any] | None = None,
        fetch_max_wait_ms: int = 100,
        stop_timeout: float = 5.0,
        label: str = "agentwatch",
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.books = books
        self.kafka_options = dict(kafka_options or {})
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.stop_timeout = stop_timeout
        self.label = label
        self._warn = RateLimited()

    def apply(self, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """Route one record to the book of its key."""
        if key is None:
            for book in self.books.values():
                book.apply_record(topic, partition, offset, key, value)
            return
        target = self.books.get(key)
        if target is not None:
            target.apply_record(topic, partition, offset, key, value)

    async def run(self, ready: asyncio.Event) -> None:
        """Follow the topic until cancelled; set ``ready`` once it was read to its end (or found
        not to exist yet: nobody was ever restricted)."""
        backoff = Backoff(0.2, 5.0)
        while True:
            consumer = None
            try:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap,
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=self.fetch_max_wait_ms,
                    **self.kafka_options,
                )
                await consumer.start()
                await self._follow(consumer, backoff, ready)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._warn.warning(
                    "control",
                    "agentwatch: cannot read control topic %s on %s for %s: %s; retrying",
                    self.topic,
                    self.bootstrap,
                    self.label,
                    describe_error(exc, 300, True),
                )
            finally:
                if consumer is not None:
                    await stop_client(consumer, max(self.stop_timeout, 0.5))
            await asyncio.sleep(backoff.next())

    async def _follow(self, consumer: Any, backoff: Backoff, ready: asyncio.Event) -> None:
        # Listing all topics does not auto-create the control topic (it must be compacted).
        while self.topic not in await consumer.topics():
            if not ready.is_set():
                log.info(
                    "agentwatch: control topic %s does not exist yet; %s unrestricted",
                    self.topic,
                    self.label,
                )
                ready.set()
            backoff.reset()
            await asyncio.sleep(TOPIC_POLL_S)
        consumer.subscribe([self.topic])  # no group: all partitions, from the start
        deadline = time.monotonic() + 10.0
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError("no partitions assigned for the control topic")
            await asyncio.sleep(0.01)
        partitions = list(consumer.assignment())
        ends: dict[Any, int] = await log_end_offsets(consumer, partitions)
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=200 if not caught_up else 1000)
            for records in batches.values():
                for r in records:
                    self.apply(r.topic, r.partition, r.offset, r.key, r.value)
            backoff.reset()
            if not caught_up:
                positions = [await consumer.position(tp) for tp in partitions]
                if all(
                    pos >= ends.get(tp, 0) for pos, tp in zip(positions, partitions, strict=True)
                ):
                    caught_up = True
                    ready.set()
