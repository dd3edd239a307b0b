"""Fleet summaries across workers: publish this worker's, absorb everyone else's.

A worker sees only the agents of its own partitions. Every ``fleet_exchange_s`` it publishes,
per fleet, what its agents contributed to the fleet state of the detectors
(:meth:`~agentwatch.detectors.engine.Engine.fleet_partials`) to the compacted
``<prefix>.fleets`` topic, keyed ``fleet|worker_id``, and it follows that topic (every
partition, from the start, outside any consumer group, like the SDK's control follower) to
absorb the other workers' (:meth:`~agentwatch.detectors.engine.Engine.absorb_many`), so each
worker judges its agents against the whole fleet. On start it reads the topic to its end
first: its own records of before a restart (same ``worker_id``) become the starting point of
its own part (:meth:`~agentwatch.detectors.engine.Engine.restore`), the others' its view of
the rest. Ingest runs beside that read (it once held its first batch for it, which exposed a
loss of buffered events at the end of a table recovery, fixed in
:mod:`agentwatch.streams.transport`); a rule that folded events before the restore keeps its
state. A worker's
summaries are forgotten ``fleet_ttl_s`` after it last published them (by the time in the
record), so a worker that left stops counting; a null value for its key (a tombstone, e.g.
produced by hand for a worker known gone) forgets it at once.

The merging is pure logic in the engine and :class:`~agentwatch.detectors.fleet_sync.FleetSync`;
this module is the Kafka adapter around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from agentwatch.config import Settings
from agentwatch.kafka_security import client_options
from agentwatch.log_end import log_end_offsets
from agentwatch.logtext import escape
from agentwatch.sdk._support import Backoff, RateLimited, describe_error, stop_client
from agentwatch.streams.engine_host import EngineHost
from agentwatch.streams.metrics import WorkerMetrics

__all__ = [
    "COMPRESS_OVER",
    "FleetExchange",
    "FleetRecord",
    "decode_record",
    "encode_record",
    "record_key",
]

log = logging.getLogger(__name__)

_VERSION = 1
_TOPIC_POLL_S = 1.0
#: Values longer than this are zlib-compressed (behind a leading ``z``).
COMPRESS_OVER = 64 * 1024


@dataclass(frozen=True, slots=True)
class FleetRecord:
    """One worker's summaries of one fleet, as published at ``ts`` (wall time, seconds)."""

    worker: str
    fleet: str
    ts: float
    partials: dict[str, Any]


def record_key(fleet: str, worker: str) -> bytes:
    """The compaction key: the latest summaries per fleet and worker are kept.

    Examples
    --------
    >>> record_key("support", "host-1:/data")
    b'support|host-1:/data'
    """
    return f"{fleet}|{worker}".encode()


def encode_record(record: FleetRecord, compress_over: int = COMPRESS_OVER) -> bytes:
    """The record's value: JSON, zlib-compressed behind a ``z`` when longer than
    ``compress_over`` bytes (a large fleet's summary shrinks several times).

    Examples
    --------
    >>> raw = encode_record(FleetRecord("w1", "support", 12.5, {"cost": {"n": 1}}))
    >>> raw[:1], decode_record(raw)
    (b'{', FleetRecord(worker='w1', fleet='support', ts=12.5, partials={'cost': {'n': 1}}))
    >>> big = FleetRecord("w1", "support", 12.5, {"cost": {f"agent-{i}": i for i in range(9999)}})
    >>> raw, plain = encode_record(big), encode_record(big, compress_over=10**9)
    >>> raw[:1], len(raw) < len(plain) / 3, decode_record(raw) == big
    (b'z', True, True)
    """
    raw = orjson.dumps(
        {
            "v": _VERSION,
            "worker": record.worker,
            "fleet": record.fleet,
            "ts": record.ts,
            "partials": record.partials,
        }
    )
    if len(raw) > compress_over:
        return b"z" + zlib.compress(raw, 6)
    return raw


def decode_record(value: bytes) -> FleetRecord:
    """A record's value back; ``ValueError`` when it is not one (or of another version)."""
    if value[:1] == b"z":
        try:
            value = zlib.decompress(value[1:])
        except zlib.error as exc:
            raise ValueError(f"not a compressed fleet summary: {exc}") from None
    doc = orjson.loads(value)
    if not isinstance(doc, dict) or doc.get("v") != _VERSION:
        raise ValueError("not a version 1 fleet summary record")
    worker, fleet, ts, partials = (
        doc.get("worker"),
        doc.get("fleet"),
        doc.get("ts"),
        doc.get("partials"),
    )
    if not isinstance(worker, str) or not isinstance(fleet, str):
        raise ValueError("fleet summary record without worker or fleet")
    if not isinstance(ts, int | float) or not isinstance(partials, dict):
        raise ValueError("fleet summary record without ts or partials")
    return FleetRecord(worker, fleet, float(ts), partials)


class FleetExchange:
    """Publishes this worker's fleet summaries and absorbs the others' (see the module).

    Parameters
    ----------
    settings
        Broker, topic prefix, ``fleet_exchange_s``, ``fleet_ttl_s`` and the worker id.
    engine
        The worker's engine (its ``worker_id`` must be this worker's).
    metrics
        The worker's metrics (``agentwatch_fleet_*``); none in tests that do not look.
    clock
        Wall time in seconds (injectable for tests).
    """

    def __init__(
        self,
        settings: Settings,
        engine: EngineHost,
        *,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.metrics = metrics
        self.clock = clock
        self.topic = settings.topic("fleets")
        self.worker_id = engine.sync.worker_id
        self.ready = asyncio.Event()
        self.published = 0
        self.absorbed = 0
        self.restored = 0
        self._warn = RateLimited(logger=log)

    async def run(self) -> None:
        """Follow the topic and publish every ``fleet_exchange_s`` until cancelled."""
        backoff = Backoff(0.2, 5.0)
        settings = self.settings
        await self.engine.start()  # an engine process takes the summaries in order
        while True:
            consumer = producer = None
            try:
                options = client_options(settings)
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=settings.kafka_bootstrap,
                    group_id=None,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    fetch_max_wait_ms=200,
                    max_partition_fetch_bytes=settings.max_message_bytes,
                    **options,
                )
                producer = AIOKafkaProducer(
                    bootstrap_servers=settings.kafka_bootstrap,
                    max_request_size=settings.max_message_bytes,
                    **options,
                )
                await consumer.start()
                await producer.start()
                await self._follow(consumer, producer, backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._warn.warning(
                    "fleets",
                    "fleet summaries: cannot use %s on %s: %s; retrying",
                    self.topic,
                    settings.kafka_bootstrap,
                    describe_error(exc, 300, True),
                )
            finally:
                for client in (consumer, producer):
                    if client is not None:
                        await stop_client(client, 2.0)
            await asyncio.sleep(backoff.next())

    async def _follow(self, consumer: Any, producer: Any, backoff: Backoff) -> None:
        while self.topic not in await consumer.topics():
            if not self.ready.is_set():
                log.info("fleet summaries: %s does not exist yet; starting cold", self.topic)
                self.ready.set()
            await asyncio.sleep(_TOPIC_POLL_S)
        consumer.subscribe([self.topic])  # no group: all partitions, from the start
        deadline = time.monotonic() + 10.0
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no partitions assigned for {self.topic}")
            await asyncio.sleep(0.01)
        partitions = list(consumer.assignment())
        ends: dict[Any, int] = await log_end_offsets(consumer, partitions)
        if not self.ready.is_set():
            await self._catch_up(consumer, partitions, ends)
            self.ready.set()
        backoff.reset()
        every = self.settings.fleet_exchange_s
        next_publish = time.monotonic()
        while True:
            wait = max(next_publish - time.monotonic(), 0.0)
            batches = await consumer.getmany(timeout_ms=int(wait * 1000))
            self._absorb([r for records in batches.values() for r in records])
            if time.monotonic() >= next_publish:
                await self.publish(producer)
                self.engine.expire(self.clock())
                if self.metrics is not None:
                    sync = self.engine.sync
                    peers = {w for fleet in sync.fleets() for w in sync.workers(fleet)}
                    self.metrics.fleet_workers.set(len(peers))
                next_publish = time.monotonic() + every

    async def _catch_up(self, consumer: Any, partitions: list[Any], ends: dict[Any, int]) -> None:
        """Read the topic to its end; restore this worker's own summaries, absorb the rest."""
        latest: dict[bytes, Any] = {}
        while True:
            positions = [await consumer.position(tp) for tp in partitions]
            if all(pos >= ends.get(tp, 0) for pos, tp in zip(positions, partitions, strict=True)):
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for r in records:
                    if r.key is not None:
                        latest[r.key] = r
        own: list[FleetRecord] = []
        others = []
        for r in latest.values():
            record = self._decode(r)
            if record is None:
                continue
            if record.worker == self.worker_id:
                own.append(record)
            else:
                others.append(record)
        self.restored = sum([await self.engine.restore(r.fleet, r.partials) for r in own])
        # the TTL counts from each one's publication
        self.engine.absorb_many((r.worker, r.fleet, r.partials, r.ts) for r in others)
        self.engine.expire(self.clock())
        self.absorbed += len(others)
        if self.metrics is not None:
            self.metrics.fleet_absorbed.inc(len(others))
        log.info(
            "fleet summaries: restored %d of this worker's (%s), absorbed %d of %d other worker(s)",
            self.restored,
            escape(self.worker_id, 200),
            len(others),
            len({r.worker for r in others}),
        )

    def _absorb(self, records: list[Any]) -> None:
        items = []
        for r in records:
            if r.value is None and r.key is not None:  # a tombstone: that worker left
                # the worker id holds no "|" (a fleet name may)
                fleet, _, worker = bytes(r.key).decode(errors="replace").rpartition("|")
                if worker and worker != self.worker_id:
                    self.engine.forget(worker, fleet)
                continue
            record = self._decode(r)
            if record is None or record.worker == self.worker_id:
                continue
            items.append(record)
        if not items:
            return
        self.engine.absorb_many((r.worker, r.fleet, r.partials, r.ts) for r in items)
        self.absorbed += len(items)
        if self.metrics is not None:
            self.metrics.fleet_absorbed.inc(len(items))

    def _decode(self, r: Any) -> FleetRecord | None:
        if r.value is None:  # a tombstone: nothing to merge
            return None
        try:
            return decode_record(r.value)
        except ValueError as exc:
            if self.metrics is not None:
                self.metrics.fleet_skipped.labels("undecodable").inc()
            self._warn.warning(
                "decode",
                "fleet summaries: skipped %s[%d]@%d: %s",
                r.topic,
                r.partition,
                r.offset,
                escape(str(exc), 200),
            )
            return None

    async def publish(self, producer: Any) -> int:
        """Send this worker's summaries of every fleet; how many were sent."""
        now = self.clock()
        sent = []
        for fleet, partials in (await self.engine.fleet_partials()).items():
            value = encode_record(FleetRecord(self.worker_id, fleet, now, partials))
            if len(value) > self.settings.max_message_bytes:
                if self.metrics is not None:
                    self.metrics.fleet_skipped.labels("too_large").inc()
                self._warn.warning(
                    "size",
                    "fleet summaries: %s's of fleet %s are %d bytes, over max_message_bytes "
                    "(%d): not published; the other workers judge it without them",
                    escape(self.worker_id, 200),
                    escape(fleet, 128),
                    len(value),
                    self.settings.max_message_bytes,
                )
                continue
            sent.append(
                await producer.send(self.topic, value, key=record_key(fleet, self.worker_id))
            )
        for future in sent:
            await future
        self.published += len(sent)
        if self.metrics is not None:
            self.metrics.fleet_published.inc(len(sent))
        return len(sent)
