"""The ingest + baseline stage: faust events in, dead letters and durable baselines out.

Per batch it validates every message, feeds valid events to the
:class:`~agentwatch.detectors.engine.Engine`, and keeps the changed agents' state in memory.
Every offset commit (every ``commit_interval_s``) writes each changed agent's state to the
table once (one changelog message per agent, not per event): :class:`CommitGuard` takes the
commit's snapshot (:meth:`BaselineStage.snapshot`: which agents) at its start, and the commit
writes them (:meth:`BaselineStage.write_snapshot`) in slices between ingest batches before
it waits for their acknowledgement; :meth:`BaselineStage.flush` writes everything at once
on revocation.

Every record ends in exactly one of three places:

- **folded** into its agent's baseline (counted once);
- **dead-lettered** with a reason (:class:`~agentwatch.streams.deadletter.DeadLetters`:
  bounded, acknowledged, retried until it is; never raises);
- **re-keyed**: a valid event without a Kafka key, or keyed by its ``agent_id`` but on another
  partition than the one that key hashes to (a producer with a non-default partitioner), is
  produced again to the agent's partition, keyed by ``agent_id``, with an
  ``agentwatch.origin`` header (``<partition>:<offset>:<floor>``); it is folded when it
  arrives there. So all of an agent's events are folded from one partition, and the offsets
  the replay guard compares are comparable.

With the engine in a process of its own, batches overlap by one: the stage checks batch N+1
(decode, key, partition, replay; the worker's larger share of an event's cost) while the
engine folds batch N, and batch N's finish (its findings, then its re-keyed copies, dead
letters and anomalies, each acknowledged) runs in the background, in order. Measured before
this (``bench --events 100000``), the stage spent 41 % of its time waiting for folds.

Offsets never run ahead of state: faust commits only offsets of acknowledged messages, and
every commit first waits until no batch is in progress nor finishing in the background
(faust sees a pipelined batch's messages acknowledged once it is handed over, before its
anomalies are out), takes its snapshot of the changed agents and chooses its offsets in one step
(``on_commit_initiated``), then writes those agents' state into the table, each slice of
them between two batches, so the stored state never holds an event whose anomaly is not out
(a state written after the snapshot may hold newer events: their offsets are past the
committed ones and stored with the state, so they are skipped when read again), and the
commit waits until the broker acknowledged the changelog records
(:mod:`agentwatch.streams.transport`). After a
crash, events replayed from the last committed offset are skipped per agent by the offset
stored next to each agent's state, so a baseline never counts an event twice; a key-less
event replayed at its origin is re-keyed again, and its second copy is recognised by its
origin (kept per agent next to the state, pruned below the origin's committed offset, the
``floor``) and dropped as a duplicate.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka.partitioner import murmur2
from faust.streams import _current_event

from agentwatch.config import Settings
from agentwatch.detectors.baseline import AgentBaseline
from agentwatch.logtext import escape
from agentwatch.schemas import ActionEvent, Anomaly, DecodeError, decode_event
from agentwatch.streams.deadletter import DeadLetters
from agentwatch.streams.engine_host import EngineHost, Fold
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.offset_gaps import OffsetGaps
from agentwatch.streams.produce import Outgoing, send_all_acked
from agentwatch.streams.recent import RecentEvents, capture, captured_events
from agentwatch.streams.state_codec import (
    Origins,
    decode_full_state,
    decode_state,
    encode_state,
)

_NOTHING: list[Anomaly] = []

__all__ = [
    "ORIGIN_HEADER",
    "BaselineStage",
    "CommitGuard",
    "decode_full_state",  # the table value's codec (agentwatch.streams.state_codec)
    "decode_state",
    "encode_state",
    "home_partition",
]

log = logging.getLogger(__name__)

ORIGIN_HEADER = "agentwatch.origin"
_MAX_HOMES = 100_000
#: at most one offset-gap warning per partition this often (the others are summed into it)
GAP_LOG_EVERY_S = 10.0
#: A commit writes its snapshot this many agents at a time, between ingest batches: one slice
#: holds the event loop ~5-10 ms (writing 1,000 agents at once held it 120-230 ms, the p99 of
#: the latency benchmark).
SNAPSHOT_SLICE = 50
#: A commit's slices are spread over this share of ``commit_interval_s`` (1,000 agents, 2 s:
#: a slice every 50 ms), not written back to back, which made the latency tail of the
#: benchmark (``bench --events 60000``, five alternated pairs: p99 194-329 ms back to back,
#: 147-230 ms spread; issue 13).
SNAPSHOT_SPREAD = 0.5
#: Before a slice, the commit waits (polling this often, at most BACKLOG_WAIT_S) until the
#: producer's buffer holds at most SNAPSHOT_SLICE records: faust stops every stream while it
#: holds more than 100 (``ProducerBuffer.wait_until_ebb``), which, when the embedded broker
#: got one record per batch, stalled ingest for ~200 ms after each commit.
BACKLOG_POLL_S = 0.005
BACKLOG_WAIT_S = 1.0


def home_partition(agent_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner (murmur2, as the Java client, aiokafka, faust
    and the agentwatch SDK) gives the key ``agent_id``: where the agent's events belong.

    Examples
    --------
    >>> home_partition("a1", 1)
    0
    """
    return int(murmur2(agent_id.encode()) & 0x7FFFFFFF) % partitions


@dataclass(slots=True)
class _Batch:
    """One batch between its check (:meth:`BaselineStage._prepare`) and its finish."""

    events: Sequence[Any]
    started: float
    rejects: list[tuple[Any, str, str]] = field(default_factory=list)
    rekeys: list[tuple[Any, str, str, int | None]] = field(default_factory=list)
    folds: list[tuple[Any, ActionEvent]] = field(default_factory=list)
    #: the engine's findings, once it folded the batch (None: nothing to fold)
    results: Awaitable[Fold] | None = None


def _forsake(batch: _Batch) -> None:
    """Drop the wait for the findings of a batch that will not finish (its engine call,
    never awaited, would be reported as such)."""
    if inspect.iscoroutine(batch.results):
        batch.results.close()


def _origin(headers: Any) -> tuple[int, int, int] | None:
    """``(partition, offset, floor)`` from an ``agentwatch.origin`` header, if any."""
    items = headers.items() if isinstance(headers, dict) else headers
    for name, raw in items:
        if name == ORIGIN_HEADER:
            try:
                partition, offset, floor = (int(x) for x in bytes(raw).split(b":"))
            except ValueError:
                return None
            return partition, offset, floor
    return None


class BaselineStage:
    """Bridges faust events to the engine with write-behind, offset-safe state.

    Parameters
    ----------
    settings
        Worker settings (limits, flush interval).
    engine
        Where the detection engine runs (:mod:`agentwatch.streams.engine_host`): it holds
        the hot baselines.
    table
        The faust table ``agent_id (bytes) -> state (bytes)``.
    deadletters
        Where rejected records go (bounded, acknowledged).
    anomalies
        The faust topic anomalies go to (key = agent_id).
    actions
        The faust actions topic (re-keyed events go back to it).
    metrics
        Where counts and timings are recorded.
    partitions
        The actions topic's partition count, ``None`` while unknown (no re-keying then).
    committed
        The committed offset of an actions partition (the floor of its re-keyed copies).
    evidence_table
        The faust table ``agent_id -> captured evidence`` (:mod:`agentwatch.streams.recent`):
        the evidence events of each anomaly, copied from the in-memory recent events when it
        is raised; ``None`` keeps nothing beyond the recent events in memory.
    backlog
        Records the tables' producer holds not yet handed to the Kafka client (faust's
        producer buffer; 0 when it is not running): :meth:`write_snapshot` paces its slices
        by it.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        engine: EngineHost,
        table: Any,
        deadletters: DeadLetters,
        anomalies: Any,
        actions: Any,
        metrics: WorkerMetrics,
        partitions: Callable[[], int | None] = lambda: None,
        committed: Callable[[Any], int | None] = lambda tp: None,
        evidence_table: Any = None,
        backlog: Callable[[], int] = lambda: 0,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.table = table
        self.deadletters = deadletters
        self.anomalies = anomalies
        self.actions = actions
        self.metrics = metrics
        self.partitions = partitions
        self.committed = committed
        self.evidence_table = evidence_table
        self.backlog = backlog
        self.recent = RecentEvents(
            settings.recent_events_per_agent, settings.recent_events_max_bytes
        )
        self._dirty: dict[str, Any] = {}  # changed since the last snapshot
        self._snapshot: dict[str, Any] = {}  # taken by a commit, not written yet
        self._offsets: dict[str, int] = {}
        self._origins: dict[str, Origins] = {}
        self._partitions: dict[str, int] = {}
        self._positions: dict[Any, int] = {}
        self._gaps: OffsetGaps[Any] = OffsetGaps()
        self._gap_logged: dict[Any, tuple[float, int, int]] = {}
        self._homes: dict[str, int] = {}
        self._homes_of = 0
        self._newest_event_time = 0.0
        self._errors_logged: set[str] = set()
        self._failure_logged_at = float("-inf")
        #: Why no state may be written nor offset committed any more (see :meth:`_interrupt`).
        self.interrupted: str | None = None
        self._batch_done = asyncio.Event()  # set: no batch in progress nor in flight
        self._batch_done.set()
        self._active = 0  # batches in progress or in flight
        self._in_flight: asyncio.Task[None] | None = None  # finishing in the background
        self._may_start = asyncio.Event()  # clear: a commit waits to take its snapshot
        self._may_start.set()
        #: Called with every event folded into a baseline (benchmarks, tests); None = off.
        self.on_event: Callable[[ActionEvent], None] | None = None
        #: Called after each snapshot write with its start and end (``time.monotonic``) and the
        #: agents it wrote (benchmarks: where the latency tail comes from); None = off.
        self.on_snapshot: Callable[[float, float, int], None] | None = None

    # -- batch processing ------------------------------------------------------------------
    async def process_batch(
        self, events: Sequence[Any], done: Callable[[Sequence[Any]], None] | None = None
    ) -> None:
        """Validate and fold one batch of faust events; dead-letter or re-key the rest.

        With the engine in-process, returns once every dead letter, re-keyed copy and anomaly
        of the batch was acknowledged by the broker (retrying as long as it takes). With the
        engine in a process of its own (``engine.apart``), returns once the batch is handed
        over and the batch before it is finished: the worker reads and checks the next batch
        while the engine folds this one, and the rest of this batch (its anomalies, dead
        letters, re-keyed copies) finishes in the background, in order. ``done`` is called
        with the events once that is over. Never raises for a record.

        A batch starts only while no offset commit is taking its snapshot, and a commit waits
        until no batch is in progress or in flight (:meth:`hold_for_commit`), so a commit
        never writes state that holds events whose anomalies are not yet acknowledged, even
        though faust saw the events acknowledged when this returned.
        """
        await self._may_start.wait()
        self._begin()
        batch = None
        try:
            batch = self._prepare(events)  # the engine has it from here
            previous, self._in_flight = self._in_flight, None
            if previous is not None:
                await previous  # one batch in flight at most; they finish in order
        except BaseException as exc:
            self._interrupt(events, exc)
            self._end()
            if batch is not None:
                _forsake(batch)
            raise
        task = asyncio.create_task(self._finish_then(batch, done), name="ingest-finish")
        task.add_done_callback(functools.partial(self._finished, batch))
        if self.engine.apart:
            self._in_flight = task  # the next batch awaits it; commits wait for settled()
            return
        await task

    async def _finish_then(
        self, batch: _Batch, done: Callable[[Sequence[Any]], None] | None
    ) -> None:
        await self._finish(batch)
        if done is not None:
            done(batch.events)

    def _finished(self, batch: _Batch, task: asyncio.Task[None]) -> None:
        """A batch's finish is over (called before anything awaiting it resumes): a
        failure, or a cancel even before it began, interrupts the stage (and is raised to
        whoever awaits it: this batch's caller, or with the engine apart the next batch)."""
        self._end()
        failure = asyncio.CancelledError() if task.cancelled() else task.exception()
        if failure is not None:
            self._interrupt(batch.events, failure)
            _forsake(batch)

    def _begin(self) -> None:
        self._active += 1
        self._batch_done.clear()

    def _end(self) -> None:
        self._active -= 1
        if not self._active:
            self._batch_done.set()

    def cut_short(self) -> bool:
        """Cancel the batch finishing in the background, if any (a stop out of patience);
        whether there was one. It is interrupted (:meth:`_interrupt`)."""
        task = self._in_flight
        if task is None or task.done():
            return False
        task.cancel()
        return True

    async def settled(self) -> None:
        """Wait until no batch is in progress nor finishing in the background."""
        while not self._batch_done.is_set():
            await self._batch_done.wait()

    def _interrupt(self, events: Sequence[Any], exc: BaseException) -> None:
        """A batch stopped before all its side effects were acknowledged (the worker is
        stopping and cancelled it, or a bug escaped it): its events may be folded into the
        state while their anomalies are not out. From now on no state is written and no
        offset committed (:attr:`interrupted`), so the next start replays from the last
        commit, as after a kill, and publishes those anomalies then."""
        if self.interrupted is None:
            spans: dict[tuple[str, int], list[int]] = {}
            for fevent in events:
                message = fevent.message
                span = spans.setdefault((message.topic, message.partition), [message.offset] * 2)
                span[0] = min(span[0], message.offset)
                span[1] = max(span[1], message.offset)
            where = ", ".join(f"{t}[{p}] {a}-{b}" for (t, p), (a, b) in spans.items())
            why = "cancelled" if isinstance(exc, asyncio.CancelledError) else escape(repr(exc), 300)
            self.interrupted = (
                f"a batch ({where or 'empty'}) stopped before its side effects were out ({why})"
            )
            log.warning(
                "%s: no state is written and no offset committed from now on; the next start "
                "reads every event since the last commit again",
                self.interrupted,
            )
        for fevent in events:  # faust's stop waits for them; no commit can follow any more
            fevent.ack()

    def _state_lost(self, exc: BaseException) -> None:
        """The engine cannot give the state to write (its process is gone): as after a
        half-done batch, nothing more is written or committed, and the next start reads every
        event since the last commit again."""
        if self.interrupted is not None:
            return
        self.interrupted = f"the state to write is lost ({escape(repr(exc), 300)})"
        log.error(
            "%s: no state is written and no offset committed from now on; the next start "
            "reads every event since the last commit again",
            self.interrupted,
        )

    async def hold_for_commit(self) -> None:
        """Wait until no batch is in progress nor finishing in the background, and start
        none until :meth:`release_commit`.

        The state :meth:`flush` writes is then the state of whole batches, every side effect
        of which (anomalies, dead letters, re-keyed copies) the broker acknowledged: a kill
        right after the write cannot leave an event folded into the stored state (so skipped
        when read again) whose anomaly was never published.
        """
        self._may_start.clear()
        await self.settled()

    def release_commit(self) -> None:
        """Let batches start again (see :meth:`hold_for_commit`)."""
        self._may_start.set()

    def _prepare(self, events: Sequence[Any]) -> _Batch:
        """Check every record of a batch (decode, key, partition, replay) and hand the ones to
        fold to the engine; what the batch's finish needs."""
        batch = _Batch(events, time.perf_counter())
        rejects, rekeys, folds = batch.rejects, batch.rekeys, batch.folds
        engine = self.engine
        offsets = self._offsets
        positions = self._positions
        gaps = self._gaps
        max_bytes = self.settings.max_event_bytes
        partitions = self.partitions()
        if partitions != self._homes_of or len(self._homes) > _MAX_HOMES:
            self._homes, self._homes_of = {}, partitions or 0
        homes = self._homes
        for fevent in events:
            message = fevent.message
            positions[message.tp] = message.offset
            missing = gaps.see(message.tp, message.offset)
            if missing:
                self._offset_gap(message.tp, message.offset, missing)
            try:
                event = decode_event(message.value, max_bytes)
            except DecodeError as err:
                rejects.append((fevent, err.code, err.detail))
                continue
            agent_id = event.agent_id
            key = message.key
            origin = None
            if partitions:
                home = homes.get(agent_id)
                if home is None:
                    home = homes[agent_id] = home_partition(agent_id, partitions)
            else:
                home = message.partition
            if key is None:
                rekeys.append((fevent, agent_id, "no_key", home if partitions else None))
                continue
            if key != agent_id.encode():
                rejects.append((fevent, "key_mismatch", "message key must equal agent_id"))
                continue
            if message.headers:
                origin = _origin(message.headers)
            if message.partition != home and origin is None:
                rekeys.append((fevent, agent_id, "wrong_partition", home))
                continue
            try:
                if not engine.holds(agent_id):
                    self._load(agent_id, fevent)
                    self._partitions[agent_id] = message.partition
                if message.offset <= offsets.get(agent_id, -1):
                    continue  # replayed after a crash: already in the stored state
                if origin is not None:
                    if self._seen_origin(agent_id, origin):
                        self.metrics.duplicates.inc()  # a second copy of a re-keyed event
                        continue
                    self._note_origin(agent_id, origin)
            except Exception as exc:  # a bug must not stop ingestion: set the record aside
                rejects.append((fevent, "processing_error", self._processing_error(exc)))
                continue
            # taken now, so the next batch, checked while the engine folds this one, sees it
            offsets[agent_id] = message.offset
            folds.append((fevent, event))
        if folds:
            batch.results = engine.fold([f[1] for f in folds], [f[0].message.value for f in folds])
        return batch

    async def _finish(self, batch: _Batch) -> None:
        """Take the engine's findings of a batch (:meth:`_prepare`), keep what changed, and
        publish its re-keyed copies, dead letters and anomalies (each acknowledged)."""
        counts: Counter[tuple[str, str, str]] = Counter()
        rejects = batch.rejects
        anomalies: list[Anomaly] = []
        found_by: list[tuple[Any, list[Anomaly]]] = []
        dirty = self._dirty
        newest = self._newest_event_time
        probe = self.on_event
        recent = self.recent
        results = await batch.results if batch.results is not None else {}
        for index, (fevent, event) in enumerate(batch.folds):
            found = results.get(index, _NOTHING)
            if isinstance(found, str):  # the engine raised (logged once per kind there)
                self.metrics.processing_errors.labels("ingest").inc()
                rejects.append((fevent, "processing_error", found))
                continue
            if found is None:
                self.metrics.duplicates.inc()
                continue
            agent_id = event.agent_id
            if found:
                anomalies.extend(found)
                found_by.append((fevent, found))
            dirty[agent_id] = fevent
            recent.add(agent_id, fevent.message.value, event.event_id)
            counts[(event.fleet, event.kind, event.status)] += 1
            if probe is not None:
                probe(event)
            newest = max(newest, event.ts_epoch)
        self._newest_event_time = newest
        if batch.rekeys:
            await self._rekey(batch.rekeys)
        if rejects:
            await self.deadletters.send_all(rejects)
        if found_by and self.evidence_table is not None:
            self._capture(found_by)
        if anomalies:
            await self._publish(
                self.anomalies,
                "anomaly",
                [Outgoing(a.agent_id.encode(), a.model_dump_json().encode()) for a in anomalies],
            )
            for anomaly in anomalies:
                self.metrics.anomalies.labels(anomaly.detector, anomaly.severity).inc()
        for (fleet, kind, status), n in counts.items():
            self.metrics.events_ingested.labels(fleet, kind, status).inc(n)
        self.metrics.batch_events.observe(len(batch.events))
        self.metrics.batch_seconds.observe(time.perf_counter() - batch.started)

    def _offset_gap(self, tp: Any, offset: int, missing: int) -> None:
        """Count and report the ``missing`` offsets before ``offset`` of ``tp``, never
        received (:class:`OffsetGaps`), so never folded: at most one warning per partition
        every ``GAP_LOG_EVERY_S`` (the holes in between are summed into the next one)."""
        self.metrics.offset_gaps.inc()
        self.metrics.offsets_skipped.inc(missing)
        now = time.monotonic()
        logged_at, held_gaps, held_missing = self._gap_logged.get(tp, (float("-inf"), 0, 0))
        if now - logged_at < GAP_LOG_EVERY_S:
            self._gap_logged[tp] = (logged_at, held_gaps + 1, held_missing + missing)
            return
        self._gap_logged[tp] = (now, 0, 0)
        since = (
            f" ({held_gaps} more holes, {held_missing} offsets, since the last warning)"
            if held_gaps
            else ""
        )
        log.warning(
            "offset gap on %s partition %d: expected offset %d, received %d, %d missing; "
            "events never received are in no baseline (see docs/operations.md, offset gaps)%s",
            escape(str(tp.topic), 200),
            tp.partition,
            offset - missing,
            offset,
            missing,
            since,
        )

    def _capture(self, found_by: list[tuple[Any, list[Anomaly]]]) -> None:
        """Copy each anomaly's evidence events into the ``evidence`` table (its agent's key,
        written as the event that raised it)."""
        for fevent, found in found_by:
            for anomaly in found:
                agent = anomaly.agent_id
                held = self.recent.find(agent, anomaly.evidence)
                if not held:
                    continue
                events = [held[e] for e in anomaly.evidence if e in held]
                token = _current_event.set(weakref.ref(fevent))
                try:
                    key = agent.encode()
                    value, changed = capture(
                        self.evidence_table.get(key), anomaly.anomaly_id, events
                    )
                    if changed:
                        self.evidence_table[key] = value
                finally:
                    _current_event.reset(token)

    def _processing_error(self, exc: Exception) -> str:
        self.metrics.processing_errors.labels("ingest").inc()
        name = type(exc).__name__
        if name not in self._errors_logged and len(self._errors_logged) < 100:
            self._errors_logged.add(name)  # one traceback per kind of error
            log.exception("processing an event raised %s (dead-lettered as processing_error)", name)
        return f"{name}: {exc}"

    # -- re-keying -------------------------------------------------------------------------
    async def _rekey(self, rekeys: list[tuple[Any, str, str, int | None]]) -> None:
        records = []
        for fevent, agent_id, reason, home in rekeys:
            message = fevent.message
            floor = self.committed(message.tp) or 0
            origin = f"{message.partition}:{message.offset}:{floor}".encode()
            records.append(
                Outgoing(agent_id.encode(), message.value, [(ORIGIN_HEADER, origin)], home)
            )
            self.metrics.events_rekeyed.labels(reason).inc()
        await self._publish(self.actions, "rekey", records)

    def _seen_origin(self, agent_id: str, origin: tuple[int, int, int]) -> bool:
        partition, offset, _ = origin
        entry = self._origins.get(agent_id, {}).get(partition)
        return entry is not None and (offset < entry[0] or offset in entry[1])

    def _note_origin(self, agent_id: str, origin: tuple[int, int, int]) -> None:
        partition, offset, floor = origin
        per_agent = self._origins.setdefault(agent_id, {})
        entry = per_agent.get(partition)
        if entry is None:
            entry = per_agent[partition] = [floor, set()]
        if floor > entry[0]:
            entry[0] = floor
            entry[1] = {o for o in entry[1] if o >= floor}
        entry[1].add(offset)

    # -- producing -------------------------------------------------------------------------
    async def _publish(self, topic: Any, purpose: str, records: Sequence[Outgoing]) -> None:
        """Send every record, wait for every ack; a failed one is retried until acked."""

        def failed(exc: BaseException, attempt: int) -> None:
            self.metrics.send_failures.labels(purpose).inc()
            now = time.monotonic()
            if now - self._failure_logged_at >= self.settings.deadletter_log_interval_s:
                self._failure_logged_at = now
                log.error(
                    "%s send not acknowledged (attempt %d; retrying, ingest waits): %s",
                    purpose,
                    attempt,
                    escape(repr(exc), 300),
                )

        await send_all_acked(topic, records, on_failure=failed, backoff=self.deadletters.backoff)

    @property
    def busy(self) -> bool:
        """Whether a batch is in progress or finishing in the background."""
        return not self._batch_done.is_set()

    @property
    def pending(self) -> int:
        """Agents whose state changed and is not written yet."""
        return len(self._dirty.keys() | self._snapshot.keys())

    def _load(self, agent_id: str, fevent: Any) -> None:
        token = _current_event.set(weakref.ref(fevent))
        try:
            value = self.table.get(agent_id.encode())
        finally:
            _current_event.reset(token)
        offset, origins = self.engine.load(agent_id, value)  # held from now on, even if new
        if value is not None:
            self._offsets[agent_id] = offset
            if origins:
                self._origins[agent_id] = origins

    # -- durability ------------------------------------------------------------------------
    def snapshot(self) -> int:
        """Take a commit's snapshot: the agents changed so far are written
        (:meth:`write_snapshot`) before the offsets chosen now are committed; return how many.

        Called while no batch is in progress (:meth:`hold_for_commit`). Agents of a snapshot
        not written yet (a commit that committed nothing) stay in it.
        """
        if self.interrupted is not None:
            return 0  # nothing is written any more (see _interrupt)
        if self._snapshot:
            self._snapshot.update(self._dirty)
        else:
            self._snapshot = self._dirty
        self._dirty = {}
        return len(self._snapshot)

    async def write_snapshot(self) -> int:
        """Write the snapshot's agents to the table, :data:`SNAPSHOT_SLICE` at a time, each
        slice while no batch is in progress and batches running between slices; return how
        many were written.

        A slice starts once the producer's backlog is down to :data:`SNAPSHOT_SLICE` records
        (at most :data:`BACKLOG_WAIT_S`). An agent folded in again since the snapshot is
        written with its newer state (whole batches, their anomalies acknowledged, the offset
        of its last event stored with it) and stays changed for the next commit.
        """
        written = 0
        busy = 0.0
        begun = time.monotonic()
        slices = -(-len(self._snapshot) // SNAPSHOT_SLICE)
        gap = SNAPSHOT_SPREAD * self.settings.commit_interval_s / max(slices, 1)
        due = begun
        while self._snapshot:
            due += gap
            waited = 0.0
            while self.backlog() > SNAPSHOT_SLICE and waited < BACKLOG_WAIT_S:
                await asyncio.sleep(BACKLOG_POLL_S)
                waited += BACKLOG_POLL_S
            await self.hold_for_commit()
            try:
                started = time.perf_counter()
                agents = list(itertools.islice(self._snapshot, SNAPSHOT_SLICE))
                slice_ = {a: self._snapshot.pop(a) for a in agents}
                pending = self._encode(slice_)  # the state of whole batches, asked for now
            finally:
                self.release_commit()
            written += await self._store(slice_, pending)  # an engine process encodes it
            busy += time.perf_counter() - started
            # batches run meanwhile: the slices are spread over SNAPSHOT_SPREAD of the
            # commit interval, not written back to back
            await asyncio.sleep(max(0.0, due - time.monotonic()) if self._snapshot else 0)
        if written:
            self.metrics.flush_seconds.observe(busy)
            if self.on_snapshot is not None:
                self.on_snapshot(begun, time.monotonic(), written)
        return written

    async def flush(self) -> int:
        """Write every changed agent's state to the table at once (the snapshot not written
        yet, then the rest); return how many (none after an interrupted batch)."""
        self.snapshot()
        started = time.perf_counter()
        snapshot, self._snapshot = self._snapshot, {}
        written = await self._write(snapshot)
        if written:
            self.metrics.flush_seconds.observe(time.perf_counter() - started)
        return written

    async def _write(self, agents: dict[str, Any]) -> int:
        """Write each agent's current state to the table (as its last event ``agents`` maps
        it to); return how many."""
        return await self._store(agents, self._encode(agents))

    def _encode(self, agents: dict[str, Any]) -> Awaitable[dict[str, bytes]] | None:
        """Ask the engine for the agents' table values as they stand now (an engine process
        answers after every batch handed over before, whatever is handed over after);
        ``None`` when there is nothing to write or nothing may be written
        (:meth:`_interrupt`)."""
        if self.interrupted is not None or not agents:
            return None
        offsets, origins = self._offsets, self._origins
        try:
            return self.engine.encode(
                [(a, offsets[a], origins.get(a)) for a in agents if a in offsets]
            )
        except Exception as exc:  # an engine process that is gone
            self._state_lost(exc)
            return None

    async def _store(
        self, agents: dict[str, Any], pending: Awaitable[dict[str, bytes]] | None
    ) -> int:
        """Write the values :meth:`_encode` asked for to the table; how many: none after an
        interrupted batch (see :meth:`_interrupt`), the one guard every state write passes."""
        if pending is None:
            return 0
        try:
            values = await pending
        except Exception as exc:  # an engine process that died meanwhile
            self._state_lost(exc)
            return 0
        if self.interrupted is not None:
            return 0
        table = self.table
        written = 0
        for agent_id, value in values.items():
            token = _current_event.set(weakref.ref(agents[agent_id]))
            try:
                table[agent_id.encode()] = value
            finally:
                _current_event.reset(token)
            written += 1
        if written:
            self.metrics.table_writes.inc(written)
        return written

    def update_metrics(self) -> None:
        """Refresh the gauges (agents held, event-time lag)."""
        self.metrics.agents.set(self.engine.agents)
        if self._newest_event_time:
            self.metrics.event_time_lag.set(max(0.0, time.time() - self._newest_event_time))

    async def on_revoked(self, partitions: Iterable[int]) -> None:
        """Flush, then forget agents whose partition moved to another worker, and the next
        offset expected of those partitions (another worker may read them meanwhile), once
        the batch finishing in the background (if any) is over."""
        await self.settled()
        await self.flush()
        gone = set(partitions)
        self._gaps.forget(tp for tp in self._gaps.partitions() if tp.partition in gone)
        agents = {a for a, p in self._partitions.items() if p in gone}
        self.engine.evict(agents)
        self.recent.evict(agents)
        for agent_id in agents:
            self._partitions.pop(agent_id, None)
            self._offsets.pop(agent_id, None)
            self._origins.pop(agent_id, None)

    # -- views -----------------------------------------------------------------------------
    async def baseline(self, agent_id: str) -> AgentBaseline | None:
        """The freshest baseline of an agent owned here: in memory, else the table."""
        hot = await self.engine.baseline(agent_id)
        if hot is not None:
            return hot
        value = self.table.get(agent_id.encode())
        return None if value is None else decode_state(value)[1]

    def recent_events(self, agent_id: str) -> list[bytes]:
        """The raw events held of an agent owned here: the evidence captured for its anomalies,
        then its recent events (oldest first)."""
        captured = []
        if self.evidence_table is not None:
            captured = captured_events(self.evidence_table.get(agent_id.encode()))
        return captured + self.recent.events(agent_id)

    def positions(self) -> dict[Any, int]:
        """Last offset read per topic-partition (for consumer lag)."""
        return dict(self._positions)


class CommitGuard(faust.Sensor):  # type: ignore[misc]
    """A faust sensor that takes the stage's snapshot at the start of every offset commit.

    The worker's consumer (:mod:`agentwatch.streams.transport`) first waits for the batch in
    progress (:meth:`BaselineStage.hold_for_commit`); the snapshot and faust's choice of the
    offsets to commit then happen in one step, and batches resume right after. The consumer
    then writes the snapshot (:meth:`BaselineStage.write_snapshot`) before it flushes the
    producer and commits.
    """

    #: its service chatter (starting, stopping) goes with faust's, not the stage's records
    logger = logging.getLogger("agentwatch.faust")

    def __init__(self, stage: BaselineStage) -> None:
        super().__init__()
        self.stage = stage

    def on_commit_initiated(self, consumer: Any) -> Any:
        self.stage.snapshot()
        self.stage.release_commit()
        return super().on_commit_initiated(consumer)
