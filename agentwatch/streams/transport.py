"""The faust app class with agentwatch's Kafka transport: a configurable consumer fetch wait,
commits that wait for a consistent state, and a producer flush that waits for every
acknowledgement.

- faust 0.15.3 hard-codes ``fetch_max_wait_ms=1500`` for the worker consumer. Brokers that
  hold a fetch until that wait expires (Tansu does, measured: ~1 s median produce-to-process
  latency) then add up to 1.5 s to every event's detection time. The consumer below takes the
  wait from :attr:`Settings.fetch_max_wait_ms` instead.
- faust flushes its producer before it commits offsets, so that the changelog holds the table
  state those offsets stand for. But faust's flush returns early: its buffer flush gives up
  after 0.1 s without a record sent, and never waits for the record being handed to the Kafka
  client at that moment. Offsets were then committed while table changelog records were still
  unsent (measured in a full-size kill storm: 15 of 132 commit rounds ended with a changelog
  record not yet acknowledged). A
  SIGKILL in that window loses events: a worker on a new disk restores the older changelog
  record, and a restart on the same RocksDB replays an older record the broker stored but the
  dead process never saw acknowledged over the newer local state; either way the committed
  offsets never read those events again. :class:`AckedFlushProducer` makes the flush wait
  until the broker acknowledged every record sent before it began.
- faust runs the state flush (a sensor's ``on_commit_initiated``) whenever the commit timer
  fires, even while the ingest stage is between folding a batch and the broker's
  acknowledgement of that batch's anomalies. A kill then left events in the stored state,
  skipped when read again, whose anomalies never went out. The consumer below first holds the
  app's :class:`CommitBarrier` (the ingest stage), which waits for the batch in progress.
- Writing the state of every changed agent in that one step held the event loop, so ingest,
  for as long as it took (1,000 agents: 120-230 ms, every commit). The sensor only takes the
  barrier's snapshot; once faust chose the offsets, the consumer has the barrier write it
  (:meth:`CommitBarrier.write_snapshot`, in slices between batches) before faust flushes the
  producer and commits.
- faust drops records it fetched but no agent took yet whenever a rebalance or a table
  recovery ends: the records of a partition still paused, those fetched while the flow was
  stopped, and every agent's buffered events (its queues are cleared when the flow resumes),
  trusting the seek to the committed offsets that comes with it to read them again. But
  aiokafka's ``seek_to_committed`` leaves a partition with no committed offset (or 0) where
  it is, past those records: they were never read again, a later event of the same agent was
  folded, and its offset, stored with the state, made the replay guard skip them for good
  (a first batch held 5 s after a restart lost 6 of 13 events in 3 of 10 runs of
  ``tests/streams/test_changelog_durability.py``). The consumer below reads such a partition
  from its start again instead (``earliest``, the worker's reset policy); the replay guard
  skips what was folded already. :func:`partitions_to_rewind` chooses them.
- faust recovers a table up to the end ``ListOffsets`` gives, which the embedded broker
  counts in record batches (:mod:`agentwatch.log_end`): a changelog written in batches of
  many records was recovered short. The consumer below takes the end a fetch sees.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Protocol

import faust
from faust.transport.drivers import aiokafka as driver
from faust.types import TP

from agentwatch.log_end import log_end_offsets
from agentwatch.logtext import escape
from agentwatch.streams import refetch

__all__ = [
    "AckedFlushProducer",
    "AgentwatchApp",
    "CommitBarrier",
    "FetchWait",
    "UnacknowledgedRecordError",
    "partitions_to_rewind",
]

log = logging.getLogger(__name__)

#: the start-up and shut-down chatter of agentwatch's faust services goes with faust's
#: (``agentwatch worker`` logs it from WARNING at the default level)
_CHATTER = logging.getLogger("agentwatch.faust")

#: aiokafka's ``prefetch_backoff`` (its Fetcher's default; the consumer does not expose it).
AIOKAFKA_PREFETCH_BACKOFF_S = 0.1
#: aiokafka's ``consumer_timeout_ms`` (faust does not pass it): how long the fetcher's routine
#: sleeps when it found no fetch to send.
AIOKAFKA_CONSUMER_TIMEOUT_S = 0.2

#: How often a waiting flush checks the producer is still running (and logs that it waits).
FLUSH_CHECK_S = 1.0
FLUSH_LOG_EVERY_S = 10.0


class UnacknowledgedRecordError(RuntimeError):
    """A record the state depends on failed, or can no longer be sent: offsets must not move."""


class AckedFlushProducer(driver.Producer):  # type: ignore[misc]
    """faust's Kafka producer, whose :meth:`flush` returns only once every record handed to
    :meth:`send_soon` (the tables' changelog records) before the flush began is resolved.

    faust calls ``flush`` right before it commits offsets, so the commit waits here instead
    of running ahead of the changelog; the worker's consumer then asks :meth:`problem`
    whether any of them failed, and does not commit if one did.
    """

    logger = _CHATTER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unacked: set[asyncio.Future[Any]] = set()
        self._failed: list[asyncio.Future[Any]] = []
        self._unsent = 0

    @property
    def unacknowledged(self) -> int:
        """Records handed to :meth:`send_soon` the broker has not acknowledged yet."""
        return len(self._unacked)

    def send_soon(self, fut: Any) -> None:
        """Queue ``fut`` (a faust ``FutureMessage``) and track it until it is resolved."""
        self._unacked.add(fut)
        fut.add_done_callback(self._resolved)
        super().send_soon(fut)

    def _resolved(self, fut: asyncio.Future[Any]) -> None:
        self._unacked.discard(fut)
        if _failure(fut) is not None:
            self._failed.append(fut)

    def problem(self) -> UnacknowledgedRecordError | None:
        """Why offsets must not be committed now: a record handed to :meth:`send_soon` failed
        (ever, in this process), or the last :meth:`flush` ended with records never sent."""
        if self._failed:
            fut = self._failed[0]
            return UnacknowledgedRecordError(
                f"a record to {_topic(fut)} was not acknowledged "
                f"({escape(repr(_failure(fut)), 300)}); offsets are not committed past it"
            )
        if self._unsent:
            return UnacknowledgedRecordError(
                f"{self._unsent} records were never sent (producer stopped); "
                "offsets are not committed past them"
            )
        return None

    async def flush(self) -> None:
        """Send what is buffered, then wait until every record is acknowledged or failed
        (or the producer stops: see :meth:`problem`)."""
        records = set(self._unacked)  # resolved ones too, whose callback has not run yet
        try:
            await super().flush()
        except RuntimeError:
            # faust's buffer refuses to flush once it is stopping with records still queued
            # (a commit racing the worker's shutdown): those records are never sent, which
            # the loop below counts (see :meth:`problem`), so the commit is refused, not crashed
            if self.buffer.state == "running":
                raise
            log.warning("producer stopping with records queued: this commit is not made")
        started = logged = time.monotonic()
        while True:
            for fut in records:
                if fut.done() and _failure(fut) is not None and fut not in self._failed:
                    self._failed.append(fut)  # resolved, callback not run yet
            waiting = {f for f in records if not f.done()}
            self._unsent = 0
            if not waiting:
                return
            if self.buffer.state != "running" or self.state != "running":
                self._unsent = len(waiting)
                return
            now = time.monotonic()
            if now - logged >= FLUSH_LOG_EVERY_S:
                logged = now
                log.warning(
                    "offset commit waits for %d records the broker has not acknowledged "
                    "(for %.0f s; see /readyz)",
                    len(waiting),
                    now - started,
                )
            await asyncio.wait(waiting, timeout=FLUSH_CHECK_S)


def _failure(fut: asyncio.Future[Any]) -> BaseException | None:
    """Why a resolved record failed (``None``: acknowledged)."""
    if fut.cancelled():
        return asyncio.CancelledError()
    return fut.exception()


def _topic(fut: Any) -> str:
    try:
        return escape(str(fut.message.channel.get_topic_name()), 200)
    except AttributeError:  # not a faust FutureMessage
        return "?"


class FetchWait:
    """The worker consumer's fetch wait, chosen from how busy the worker is (pure logic).

    A broker that holds a fetch until its wait expires (Tansu) adds up to one fetch wait to
    every hop a halt takes through the worker (actions, then anomalies), and to every event
    a busy worker fetches after it has caught up; a short wait means more fetches (the
    broker's CPU on a shared host). So the worker fetches with ``idle_ms`` while it folds
    fewer than ``busy_events_per_s`` events a second, and with ``busy_ms`` from that rate on;
    it goes back to idle below half of it (hysteresis: no flapping around the threshold). A
    worker with a backlog finds data at every fetch, whatever the wait. A Kafka broker
    answers a fetch as soon as data is there: the wait then only sets how often an idle
    consumer asks.

    Examples
    --------
    >>> wait = FetchWait(busy_ms=100, idle_ms=10, busy_events_per_s=1000)
    >>> wait.current, wait.choose(events=50, seconds=0.5), wait.choose(2000, 0.5)
    (10, 10, 100)
    >>> wait.choose(300, 0.5), wait.choose(200, 0.5)  # 600/s: still busy; 400/s: idle
    (100, 10)
    """

    def __init__(self, busy_ms: int, idle_ms: int, busy_events_per_s: float) -> None:
        self.busy_ms = busy_ms
        self.idle_ms = min(idle_ms, busy_ms)
        self.busy_events_per_s = busy_events_per_s
        #: whether the worker counts as busy: it starts idle (a backlog makes it busy at the
        #: first look)
        self.busy = False

    @property
    def current(self) -> int:
        """The fetch wait in force (ms)."""
        return self.busy_ms if self.busy else self.idle_ms

    @property
    def prefetch_backoff_s(self) -> float:
        """How long aiokafka's fetcher holds back a fetch while a partition has records the
        worker has not taken yet: aiokafka's 0.1 s while busy, the idle wait while idle (with
        0.1 s, one such partition held a halt's anomaly back for 100 ms, 2 trials in 50)."""
        return AIOKAFKA_PREFETCH_BACKOFF_S if self.busy else self.idle_ms / 1000.0

    @property
    def poll_timeout_s(self) -> float:
        """How long aiokafka's fetch routine sleeps when it found no fetch to send: aiokafka's
        0.2 s while busy, the idle wait while idle.

        The routine can wake on a finished fetch before that fetch's node is marked free
        again; it then sends nothing and sleeps this long, with the next event waiting at the
        broker. Traced in ``bench --halt-trials 50``: 2-6 trials in 50 saw the trigger event
        fetched 60-100 ms late (an idle consumer beside the worker saw it after 6-14 ms), the
        fetcher having sent nothing for 200 ms.
        """
        return AIOKAFKA_CONSUMER_TIMEOUT_S if self.busy else self.idle_ms / 1000.0

    def choose(self, events: int, seconds: float) -> int:
        """The wait for the next interval, given ``events`` folded in the last ``seconds``."""
        rate = events / seconds if seconds > 0 else 0.0
        threshold = self.busy_events_per_s / 2.0 if self.busy else self.busy_events_per_s
        self.busy = rate >= threshold
        return self.current


def partitions_to_rewind(
    committed: Mapping[Any, int | None], changelogs: Collection[str]
) -> list[Any]:
    """The partitions a seek to the committed offsets must send back to their start: those
    with no committed offset (``None``, or 0: nothing read), which aiokafka leaves where they
    are; changelog partitions are left to faust's table recovery.

    Examples
    --------
    >>> from aiokafka import TopicPartition as TP
    >>> committed = {TP("actions", 0): 7, TP("actions", 1): None, TP("actions", 2): 0,
    ...              TP("app-baselines-changelog", 1): None}
    >>> partitions_to_rewind(committed, {"app-baselines-changelog"})
    [TopicPartition(topic='actions', partition=1), TopicPartition(topic='actions', partition=2)]
    """
    return [tp for tp, offset in committed.items() if not offset and tp.topic not in changelogs]


class _ConsumerThread(driver.AIOKafkaConsumerThread):  # type: ignore[misc]
    logger = _CHATTER

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = int(wait_ms)  # read once, in consumer.start()
        return consumer

    async def on_start(self) -> None:
        """Start the consumer; its fetcher holds fetches back and sleeps no longer than the
        fetch wait it starts with (the app's first look at the load comes 0.5 s later: a halt
        in that time waited out aiokafka's 0.1 s prefetch backoff, traced in
        ``bench --halt-trials``). Holes in the app's ``refetch_topics`` are fetched again."""
        refetch.install()
        refetch.GUARD.watch(getattr(self.app, "refetch_topics", ()))
        await super().on_start()
        wait_ms = getattr(self.app, "fetch_max_wait_ms", None)
        if wait_ms is not None:
            wait_s = wait_ms / 1000.0
            self.set_fetch_wait(
                wait_ms,
                min(wait_s, AIOKAFKA_PREFETCH_BACKOFF_S),
                min(wait_s, AIOKAFKA_CONSUMER_TIMEOUT_S),
            )

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        """Where each changelog partition ends, for table recovery: the end a fetch sees
        (:func:`~agentwatch.log_end.log_end_offsets`), so that a changelog written in
        batches of many records is recovered to its last record on the embedded broker too.
        """
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:
            return {tp: consumer.last_stable_offset(tp) for tp in partitions}
        return await log_end_offsets(consumer, partitions)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Seek every assigned partition to its committed offset, and one with none to its
        start (see the module docstring); return the committed offsets (faust's contract).

        faust calls it after every rebalance and table recovery, right after dropping what it
        fetched and did not deliver, so that those records are read again.
        """
        result: Mapping[TP, int] = await self.call_thread(self._seek_to_committed)
        return result

    async def _seek_to_committed(self) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        committed: Mapping[TP, int] = await consumer.seek_to_committed()
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return committed  # "latest": nothing before the end is to be read anyway
        rewind = partitions_to_rewind(committed, self.app.tables.changelog_topics)
        if rewind:
            log.debug("no committed offset: reading %s from the start again", rewind)
            await consumer.seek_to_beginning(*rewind)
        return committed

    def set_fetch_wait(
        self, wait_ms: int, prefetch_backoff_s: float, poll_timeout_s: float
    ) -> bool:
        """Use ``wait_ms``, ``prefetch_backoff_s`` and ``poll_timeout_s`` (see
        :class:`FetchWait`) for the next fetches; ``False`` while there is no consumer yet.

        aiokafka's fetcher reads all three each time its routine looks for fetches to send (on
        the consumer's thread); one assignment each is safe from the app's thread.
        """
        consumer = getattr(self, "_consumer", None)
        if consumer is None:
            return False
        consumer._fetch_max_wait_ms = int(wait_ms)  # a restarted consumer starts with it
        fetcher = getattr(consumer, "_fetcher", None)
        if fetcher is None:
            return False
        fetcher._fetch_max_wait_ms = int(wait_ms)
        fetcher._prefetch_backoff = float(prefetch_backoff_s)
        fetcher._fetcher_timeout = float(poll_timeout_s)
        return True


class CommitBarrier(Protocol):
    """What a commit waits for before faust takes its snapshot (the ingest stage)."""

    async def hold_for_commit(self) -> None:
        """Return once the state is at a consistent point; keep it there until released."""

    def release_commit(self) -> None:
        """Let the state move on (idempotent)."""

    @property
    def interrupted(self) -> str | None:
        """Why no offset may be committed any more (a batch stopped half done), or None."""

    async def write_snapshot(self) -> int:
        """Write the state the commit's offsets stand for (taken when it was held)."""


class _Consumer(driver.Consumer):  # type: ignore[misc]
    logger = _CHATTER

    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit(self, offsets: Any) -> bool:
        """Commit ``offsets`` unless a record the state depends on failed (faust flushed the
        producer just before): then the worker stops without committing, as faust does
        when a producer send fails, and a restart reads those events again."""
        problem_of = getattr(self.app.producer, "problem", None)
        problem = problem_of() if problem_of is not None else None
        if problem is not None:
            log.error("not committing offsets: %s", problem)
            await self.crash(problem)
            return False
        # a batch stopped half done, or the state lost, after the commit began: the snapshot
        # was not (all) written, so its offsets would run ahead of the stored state
        barrier: CommitBarrier | None = getattr(self.app, "commit_barrier", None)
        interrupted = barrier.interrupted if barrier is not None else None
        if interrupted is not None:
            if not self.app.should_stop:
                log.error("not committing offsets: %s", interrupted)
                await self.crash(UnacknowledgedRecordError(interrupted))
            return False
        return bool(await super()._commit(offsets))

    async def _handle_attached(self, commit_offsets: Any) -> None:
        """Write the barrier's snapshot (the offsets are chosen, the producer not flushed
        yet), then publish faust's attached messages."""
        barrier: CommitBarrier | None = getattr(self.app, "commit_barrier", None)
        if barrier is not None:
            await barrier.write_snapshot()
        await super()._handle_attached(commit_offsets)

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        """faust's commit, once the app's :class:`CommitBarrier` (if any) is held; faust's
        ``on_commit_initiated`` sensors (the state flush) run first thing inside it."""
        barrier: CommitBarrier | None = getattr(self.app, "commit_barrier", None)
        commit = super().force_commit
        if barrier is None:
            return bool(await commit(topics, start_new_transaction=start_new_transaction))
        try:
            await barrier.hold_for_commit()
            interrupted = barrier.interrupted
            if interrupted is not None:  # no state is written either: the next start replays
                if not self.app.should_stop:  # not a stop's cancel: stop, as a failed record does
                    log.error("not committing offsets: %s", interrupted)
                    await self.crash(UnacknowledgedRecordError(interrupted))
                return False
            return bool(await commit(topics, start_new_transaction=start_new_transaction))
        finally:
            barrier.release_commit()


class _Transport(driver.Transport):  # type: ignore[misc]
    logger = _CHATTER
    Consumer = _Consumer
    Producer = AckedFlushProducer


class AgentwatchApp(faust.App):  # type: ignore[misc]
    """A :class:`faust.App` whose Kafka consumer uses ``fetch_max_wait_ms`` (the caller's
    choice, from the settings: no default of its own) and whose producer flush (before
    every offset commit) waits for every acknowledgement."""

    logger = _CHATTER

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int,
        refetch_topics: Collection[str] = (),
        **kwargs: Any,
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        #: Topics never compacted nor written by a transactional producer: a fetch answered
        #: past its offset is made again (:mod:`agentwatch.streams.refetch`).
        self.refetch_topics = frozenset(refetch_topics)
        #: Held by every offset commit before faust takes its snapshot (set by create_app).
        self.commit_barrier: CommitBarrier | None = None
        #: Called once when a stop still waits after ``stop_grace_s`` (set by create_app; it
        #: cancels the ingest batch in progress, whose events the next start reads again).
        self.stop_overdue: Callable[[], None] | None = None
        self.stop_grace_s = 0.0  # 0: a stop waits as long as the batch in progress takes
        #: Awaited once everything stopped (set by create_app: the engine's process goes).
        self.after_stop: Callable[[], Awaitable[None]] | None = None
        super().__init__(*args, **kwargs)

    async def on_shutdown(self) -> None:
        """faust's shutdown, then :attr:`after_stop` (the last revocation flush is done)."""
        await super().on_shutdown()
        if self.after_stop is not None:
            await self.after_stop()

    async def on_stop(self) -> None:
        """faust's stop, which waits for the batch in progress (its anomalies acknowledged);
        after ``stop_grace_s``, :attr:`stop_overdue` cuts the wait short."""
        overdue = None
        if self.stop_overdue is not None and self.stop_grace_s > 0:
            overdue = asyncio.get_running_loop().call_later(self.stop_grace_s, self.stop_overdue)
        try:
            await super().on_stop()
        finally:
            if overdue is not None:
                overdue.cancel()

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def set_fetch_wait(
        self,
        wait_ms: int,
        prefetch_backoff_s: float = AIOKAFKA_PREFETCH_BACKOFF_S,
        poll_timeout_s: float = AIOKAFKA_CONSUMER_TIMEOUT_S,
    ) -> bool:
        """Give the running worker consumer a new fetch wait, prefetch backoff and poll
        timeout (see :class:`FetchWait`).

        Returns whether it took effect (not before the consumer has started).
        """
        thread = getattr(self.consumer, "_thread", None)
        return isinstance(thread, _ConsumerThread) and thread.set_fetch_wait(
            wait_ms, prefetch_backoff_s, poll_timeout_s
        )
