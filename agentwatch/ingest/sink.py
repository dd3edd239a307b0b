"""Produce mapped events and dead letters to Kafka and wait for the broker's acknowledgement.

Events go to ``<prefix>.actions`` keyed by agent id; spans that could not be mapped go to
``<prefix>.deadletter`` in the worker's dead-letter form (:func:`~agentwatch.streams.deadletter.
bounded_record`: reason, detail, length and SHA-256 headers), with the span in place of a
source record: ``agentwatch.source.otlp`` (the endpoint), ``agentwatch.source.trace_id`` and
``agentwatch.source.span_id`` instead of topic, partition and offset, and the span as JSON for
value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from agentwatch.config import Settings
from agentwatch.ingest.metrics import OtlpMetrics
from agentwatch.ingest.pipeline import Outcome
from agentwatch.ingest.spans import SpanRecord
from agentwatch.kafka_security import check_connection, client_options
from agentwatch.logtext import escape
from agentwatch.streams.deadletter import bounded_record

__all__ = ["KafkaSink", "SinkUnavailable", "span_document"]

log = logging.getLogger(__name__)

SOURCE = "/v1/traces"
RETRY_AFTER_S = 5
MAX_BATCH_BYTES = 256 * 1024
"""Record batches the receiver builds (a 500-span request takes one or two per partition)."""


class SinkUnavailable(RuntimeError):
    """Kafka did not acknowledge in time (the request is answered 503, to be retried)."""


def span_document(span: SpanRecord) -> bytes:
    """A rejected span as JSON (the dead letter's value)."""
    resource = span.resource
    return orjson.dumps(
        {
            "trace_id": span.trace_id,
            "span_id": span.span_id,
            "parent_span_id": span.parent_id,
            "name": span.name,
            "start_time_unix_nano": span.start_ns,
            "end_time_unix_nano": span.end_ns,
            "status": {"code": span.status_code, "message": span.status_message},
            "attributes": span.attributes,
            "resource": {
                "fleet": resource.fleet,
                "gen_ai.agent.id": resource.agent_id,
                "gen_ai.agent.name": resource.agent_name,
            },
        }
    )


class KafkaSink:
    """The receiver's producer.

    Parameters
    ----------
    settings
        Broker, security, topic prefix, ``max_message_bytes``, ``deadletter_max_bytes``.
    metrics
        ``send_failures`` is counted here.
    clock
        Monotonic seconds (for the 503 window after a failure).
    """

    def __init__(
        self,
        settings: Settings,
        metrics: OtlpMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.actions_topic = settings.topic("actions")
        self.deadletter_topic = settings.topic("deadletter")
        self._producer: Any = None
        self._partitioner = DefaultPartitioner()
        self._unhealthy_until = 0.0

    async def start(self, check: bool = True) -> None:
        """Connect (``check``: fail with :class:`~agentwatch.kafka_security.KafkaConnectError`
        at once when no broker answers)."""
        options = client_options(self.settings)
        if check:
            await check_connection(self.settings.kafka_bootstrap, options)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            acks="all",
            linger_ms=5,
            max_batch_size=min(MAX_BATCH_BYTES, self.settings.max_message_bytes // 2),
            max_request_size=self.settings.max_message_bytes,
            request_timeout_ms=int(self.settings.otlp_ack_timeout_s * 1000),
            **options,
        )
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and close the producer."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), 10.0)
            except Exception as exc:  # closing anyway: nothing more to do
                log.warning("OTLP receiver: closing the Kafka producer failed: %r", exc)

    @property
    def retry_after(self) -> int | None:
        """Seconds to tell clients to wait, while Kafka recently failed (``None``: healthy)."""
        if self._producer is None:
            return RETRY_AFTER_S
        left = self._unhealthy_until - self.clock()
        return max(1, round(left)) if left > 0 else None

    async def send(self, outcome: Outcome) -> None:
        """Produce ``outcome``'s events and dead letters; return once all are acknowledged.

        Raises
        ------
        SinkUnavailable
            when Kafka fails or does not acknowledge within ``otlp_ack_timeout_s``.
        """
        producer = self._producer
        if producer is None:
            raise SinkUnavailable("the Kafka producer is not running")
        try:
            futures = await self._send_events(producer, outcome.events)
            for span, reason, detail in outcome.rejected:
                record = self._deadletter(span, reason, detail)
                futures.append(
                    await producer.send(
                        self.deadletter_topic,
                        record.value,
                        key=record.key,
                        headers=record.headers,
                    )
                )
            if futures:
                await asyncio.wait_for(asyncio.gather(*futures), self.settings.otlp_ack_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.metrics.send_failures.inc()
            self._unhealthy_until = self.clock() + RETRY_AFTER_S
            log.warning(
                "OTLP receiver: Kafka did not acknowledge %d event(s) and %d dead letter(s) "
                "(%s); answering 503 for %ds",
                len(outcome.events),
                len(outcome.rejected),
                escape(repr(exc), 300),
                RETRY_AFTER_S,
            )
            raise SinkUnavailable(f"Kafka did not acknowledge: {type(exc).__name__}") from exc
        self._unhealthy_until = 0.0

    async def _send_events(self, producer: Any, events: list[tuple[bytes, bytes]]) -> list[Any]:
        """Hand ``events`` to the producer in whole record batches, one or a few per partition
        (a fifth of the cost of one ``send`` per event); the partition of each key is the one
        the producer's default partitioner picks, as for every other producer of the topic."""
        if not events:
            return []
        topic = self.actions_topic
        partitions = sorted(await producer.partitions_for(topic))
        choose = self._partitioner
        groups: dict[int, list[tuple[bytes, bytes]]] = {}
        for key, value in events:
            groups.setdefault(choose(key, partitions, partitions), []).append((key, value))
        futures: list[Any] = []
        for partition, records in groups.items():
            batch = producer.create_batch()
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        raise ValueError(f"an event of {len(value)} bytes fits no record batch")
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    async def send_until_acked(
        self, outcome: Outcome, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    ) -> None:
        """Like :meth:`send`, retrying with backoff until it succeeds (for held spans, already
        accepted: nobody can be told to send them again)."""
        delay = 0.5
        while True:
            try:
                await self.send(outcome)
                return
            except SinkUnavailable:
                await sleep(delay)
                delay = min(delay * 2, 10.0)

    def _deadletter(self, span: SpanRecord, reason: str, detail: str) -> Any:
        record = bounded_record(
            topic=SOURCE,
            partition=-1,
            offset=-1,
            key=None,
            value=span_document(span),
            reason=reason,
            detail=detail,
            max_bytes=self.settings.deadletter_max_bytes,
        )
        headers = [(k, v) for k, v in record.headers if not k.startswith("agentwatch.source.")]
        headers += [
            ("agentwatch.source.otlp", SOURCE.encode()),
            ("agentwatch.source.trace_id", span.trace_id.encode()[:64]),
            ("agentwatch.source.span_id", span.span_id.encode()[:32]),
        ]
        return type(record)(key=record.key, value=record.value, headers=headers)
