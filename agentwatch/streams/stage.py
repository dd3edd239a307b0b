"""The ingest + baseline stage: faust events in, dead letters and durable baselines out.

Per batch it validates every message (failures go to the dead-letter topic with the reason),
feeds valid events to the :class:`~agentwatch.detectors.engine.Engine`, and keeps the changed
agents' state in memory. :meth:`BaselineStage.flush` writes each changed agent's state to the
table once (one changelog message per agent, not per event); :class:`CommitGuard` runs it at
the start of every offset commit (every ``commit_interval_s``) and it runs on revocation.

Offsets never run ahead of state: faust commits only offsets of acknowledged messages, a
message is acknowledged only after its batch was folded in, the commit first flushes our
state into the changelog (``on_commit_initiated``), and faust flushes the producer before it
commits offsets. After a crash, events replayed from the last committed offset are skipped per
agent by the offset stored next to each agent's state, so a baseline never counts an event
twice.
"""

from __future__ import annotations

import logging
import struct
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import faust
import orjson
from faust.streams import _current_event

from agentwatch.config import Settings
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.detectors.engine import Engine
from agentwatch.schemas import ActionEvent, Anomaly, DecodeError, decode_event
from agentwatch.streams.metrics import WorkerMetrics

__all__ = ["BaselineStage", "CommitGuard"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct(">qI")  # source offset of the last event folded in, baseline length


def encode_state(offset: int, baseline: AgentBaseline, detectors: dict[str, Any]) -> bytes:
    """Table value: offset and baseline length, the baseline, then detector state (JSON)."""
    packed = baseline.to_bytes()
    return _HEADER.pack(offset, len(packed)) + packed + orjson.dumps(detectors)


def decode_state(value: bytes) -> tuple[int, AgentBaseline, dict[str, Any]]:
    """Inverse of :func:`encode_state`."""
    offset, size = _HEADER.unpack_from(value)
    start = _HEADER.size
    baseline = AgentBaseline.from_bytes(value[start : start + size])
    detectors = orjson.loads(value[start + size :])
    return offset, baseline, detectors


class BaselineStage:
    """Bridges faust events to the engine with write-behind, offset-safe state.

    Parameters
    ----------
    settings
        Worker settings (limits, flush interval).
    engine
        The shared detection engine (holds the hot baselines).
    table
        The faust table ``agent_id (bytes) -> state (bytes)``.
    deadletter
        The faust topic malformed messages go to.
    anomalies
        The faust topic anomalies go to (key = agent_id).
    metrics
        Where counts and timings are recorded.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        engine: Engine,
        table: Any,
        deadletter: Any,
        anomalies: Any,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.table = table
        self.deadletter = deadletter
        self.anomalies = anomalies
        self.metrics = metrics
        self._dirty: dict[str, Any] = {}
        self._offsets: dict[str, int] = {}
        self._partitions: dict[str, int] = {}
        self._positions: dict[Any, int] = {}
        self._newest_event_time = 0.0
        #: Called with every event folded into a baseline (benchmarks, tests); None = off.
        self.on_event: Callable[[ActionEvent], None] | None = None

    # -- batch processing ------------------------------------------------------------------
    async def process_batch(self, events: Sequence[Any]) -> None:
        """Validate and fold one batch of faust events; dead-letter the bad ones."""
        started = time.perf_counter()
        counts: Counter[tuple[str, str, str]] = Counter()
        rejects: list[tuple[Any, str, str]] = []
        anomalies: list[Anomaly] = []
        engine = self.engine
        offsets = self._offsets
        dirty = self._dirty
        max_bytes = self.settings.max_event_bytes
        newest = self._newest_event_time
        probe = self.on_event
        for fevent in events:
            message = fevent.message
            self._positions[message.tp] = message.offset
            try:
                event = decode_event(message.value, max_bytes)
            except DecodeError as err:
                rejects.append((fevent, err.code, err.detail))
                continue
            agent_id = event.agent_id
            if message.key is not None and message.key != agent_id.encode():
                rejects.append((fevent, "key_mismatch", "message key must equal agent_id"))
                continue
            if agent_id not in engine.baselines:
                self._load(agent_id, fevent)
                self._partitions[agent_id] = message.partition
            if message.offset <= offsets.get(agent_id, -1):
                continue  # replayed after a crash: already in the stored state
            found = engine.process(event)
            if found is None:
                self.metrics.duplicates.inc()
                continue
            if found:
                anomalies.extend(found)
            offsets[agent_id] = message.offset
            dirty[agent_id] = fevent
            counts[(event.fleet, event.kind, event.status)] += 1
            if probe is not None:
                probe(event)
            ts = event.ts_epoch
            newest = max(newest, ts)
        self._newest_event_time = newest
        for fevent, code, detail in rejects:
            await self._dead_letter(fevent, code, detail)
        for anomaly in anomalies:
            await self.anomalies.send(
                key=anomaly.agent_id.encode(), value=anomaly.model_dump_json().encode()
            )
            self.metrics.anomalies.labels(anomaly.detector, anomaly.severity).inc()
        for (fleet, kind, status), n in counts.items():
            self.metrics.events_ingested.labels(fleet, kind, status).inc(n)
        self.metrics.batch_events.observe(len(events))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)

    @property
    def pending(self) -> int:
        """Agents whose state changed since the last flush."""
        return len(self._dirty)

    def _load(self, agent_id: str, fevent: Any) -> None:
        token = _current_event.set(weakref.ref(fevent))
        try:
            value = self.table.get(agent_id.encode())
        finally:
            _current_event.reset(token)
        if value is not None:
            offset, baseline, detectors = decode_state(value)
            self.engine.baselines[agent_id] = baseline
            self.engine.states[agent_id] = detectors
            self._offsets[agent_id] = offset

    async def _dead_letter(self, fevent: Any, code: str, detail: str) -> None:
        message = fevent.message
        log.warning(
            "dead-lettered message topic=%s partition=%s offset=%s reason=%s: %s",
            message.topic,
            message.partition,
            message.offset,
            code,
            detail,
        )
        headers = [
            ("agentwatch.reason", code.encode()),
            ("agentwatch.detail", detail.encode("utf-8", "replace")[:1024]),
            ("agentwatch.source.topic", message.topic.encode()),
            ("agentwatch.source.partition", str(message.partition).encode()),
            ("agentwatch.source.offset", str(message.offset).encode()),
        ]
        await self.deadletter.send(key=message.key, value=message.value or b"", headers=headers)
        self.metrics.deadletters.labels(code).inc()

    # -- durability ------------------------------------------------------------------------
    def flush(self) -> int:
        """Write every changed agent's state to the table once; return how many."""
        started = time.perf_counter()
        dirty, self._dirty = self._dirty, {}
        table = self.table
        engine = self.engine
        for agent_id, fevent in dirty.items():
            baseline = engine.baselines.get(agent_id)
            if baseline is None:
                continue
            value = encode_state(self._offsets[agent_id], baseline, engine.states[agent_id])
            token = _current_event.set(weakref.ref(fevent))
            try:
                table[agent_id.encode()] = value
            finally:
                _current_event.reset(token)
        if dirty:
            self.metrics.table_writes.inc(len(dirty))
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
        return len(dirty)

    def update_metrics(self) -> None:
        """Refresh the gauges (agents held, event-time lag)."""
        self.metrics.agents.set(len(self.engine.baselines))
        if self._newest_event_time:
            self.metrics.event_time_lag.set(max(0.0, time.time() - self._newest_event_time))

    def on_revoked(self, partitions: Iterable[int]) -> None:
        """Flush, then forget agents whose partition moved to another worker."""
        self.flush()
        gone = set(partitions)
        agents = {a for a, p in self._partitions.items() if p in gone}
        self.engine.evict(agents)
        for agent_id in agents:
            self._partitions.pop(agent_id, None)
            self._offsets.pop(agent_id, None)

    # -- views -----------------------------------------------------------------------------
    def baseline(self, agent_id: str) -> AgentBaseline | None:
        """The freshest baseline of an agent owned here: in memory, else the table."""
        hot = self.engine.baselines.get(agent_id)
        if hot is not None:
            return hot
        value = self.table.get(agent_id.encode())
        return None if value is None else decode_state(value)[1]

    def positions(self) -> dict[Any, int]:
        """Last offset read per topic-partition (for consumer lag)."""
        return dict(self._positions)


class CommitGuard(faust.Sensor):  # type: ignore[misc]
    """A faust sensor that flushes the stage at the start of every offset commit."""

    def __init__(self, stage: BaselineStage) -> None:
        super().__init__()
        self.stage = stage

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.stage.flush()
        return super().on_commit_initiated(consumer)
