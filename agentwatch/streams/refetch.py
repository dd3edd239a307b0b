"""Fetch an offset again instead of skipping it, on topics that are never compacted.

aiokafka accepts a fetch answered with records after the offset it asked for, as it must on a
compacted topic, and moves past the offsets in between. On a topic that is never compacted and
that no transactional producer writes, such an answer means records not visible yet, not
records gone: the embedded broker (Tansu 0.6.0, memory storage) answers a fetch at X with a
batch from X+1 while two producers write to the partition, and a fetch at X a moment later
returns X (traced in docs/operations.md, "Offset gaps"). Accepting it lost that event.

:class:`RefetchGuard` reads a fetched response batch by batch and stops at the first batch that
starts after the offset the previous one ended at (the fetch offset, for the first): the
records before it are delivered, and the consumer's next fetch asks for the missing offset
again. Control batches (transaction markers) take their offsets like any batch, so they never
look like a hole. A hole that is still there after ``max_wait_s`` is accepted, with a WARNING
naming the topic, partition and offsets: the ingest stage then reports it as an offset gap.
A topic with ``max_accepted`` such holes is compacted after all (created by hand, or its policy
changed): it is no longer guarded, so its holes stop costing a wait each.

The guard is installed into aiokafka's fetcher (:func:`install`): it builds its
``PartitionRecords`` from a module global, and no consumer option reaches it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka.consumer import fetcher as _fetcher

__all__ = ["GUARD", "RefetchGuard", "install"]

log = logging.getLogger(__name__)

#: How long a hole is fetched again before it is accepted (seconds).
MAX_WAIT_S = 3.0
#: A topic with this many holes accepted is compacted after all (a topic created by hand, or
#: whose policy was changed): it is no longer guarded, so each of its holes costs no wait.
MAX_ACCEPTED = 3
#: Held holes not asked about for this long are forgotten (a consumer that moved elsewhere).
FORGET_AFTER_S = 60.0


class RefetchGuard:
    """Which topics have no legitimate holes, and how long each hole was fetched again.

    Parameters
    ----------
    max_wait_s
        A hole still there this long after it was first seen is accepted.
    clock
        Monotonic seconds (injected in tests).
    max_accepted
        After this many holes accepted in one topic, the topic is taken for compacted and no
        longer guarded (a WARNING says so).

    Examples
    --------
    >>> now = [0.0]
    >>> guard = RefetchGuard(max_wait_s=3.0, clock=lambda: now[0])
    >>> guard.watch(["aw.actions"])
    >>> guard.guards("aw.actions"), guard.guards("aw.control")
    (True, False)
    >>> guard.accept(("aw.actions", 0), 41, 42)  # first seen: fetch 41 again
    False
    >>> now[0] = 3.5
    >>> guard.accept(("aw.actions", 0), 41, 42)  # still there after 3 s: accepted
    True
    """

    def __init__(
        self,
        max_wait_s: float = MAX_WAIT_S,
        clock: Callable[[], float] = time.monotonic,
        max_accepted: int = MAX_ACCEPTED,
    ) -> None:
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.max_accepted = max_accepted
        self._topics: set[str] = set()
        self._accepted_in: dict[str, int] = {}
        self._held: dict[tuple[Any, int], tuple[float, int]] = {}
        self.refetches = 0
        self.accepted = 0

    def watch(self, topics: Iterable[str]) -> None:
        """Guard ``topics`` (never compacted, no transactional producer)."""
        self._topics.update(topics)

    def guards(self, topic: str) -> bool:
        """Whether a hole in ``topic`` is fetched again."""
        return topic in self._topics

    def accept(self, tp: Any, expected: int, base_offset: int) -> bool:
        """A batch of ``tp`` starts at ``base_offset`` where ``expected`` was due: ``False`` to
        fetch ``expected`` again, ``True`` (logged) once the hole has lasted ``max_wait_s``."""
        now = self.clock()
        if len(self._held) > 64:
            self._forget(now)
        first, tries = self._held.get((tp, expected), (now, 0))
        if now - first < self.max_wait_s:
            self._held[(tp, expected)] = (first, tries + 1)
            self.refetches += 1
            return False
        del self._held[(tp, expected)]
        self.accepted += 1
        topic, partition = tp[0], tp[1]  # an aiokafka TopicPartition is a named tuple
        log.warning(
            "offsets %d to %d of %s partition %s still missing after %d fetches in %.1f s;"
            " reading on from %d",
            expected,
            base_offset - 1,
            topic,
            partition,
            tries + 1,
            now - first,
            base_offset,
        )
        accepted = self._accepted_in.get(topic, 0) + 1
        self._accepted_in[topic] = accepted
        if accepted >= self.max_accepted:
            self._topics.discard(topic)
            log.warning(
                "%s has had %d holes that stayed: it looks compacted (check its cleanup.policy);"
                " holes in it are read past from now on, without waiting",
                topic,
                accepted,
            )
        return True

    def settled(self, tp: Any, offset: int) -> None:
        """A fetch of ``tp`` read past ``offset``: a hole held there was filled."""
        if self._held.pop((tp, offset), None) is not None:
            log.debug("offset %d of %s arrived when fetched again", offset, tp)

    def _forget(self, now: float) -> None:
        for key, (first, _) in list(self._held.items()):
            if now - first > FORGET_AFTER_S:
                del self._held[key]

    def check(self, tp: Any, records: Any, fetch_offset: int) -> Any:
        """``records`` (aiokafka ``MemoryRecords``) as they should be read: up to a hole."""
        if not self.guards(tp.topic):
            return records
        return _UpToHole(self, tp, records, fetch_offset)


class _UpToHole:
    """aiokafka ``MemoryRecords`` that end before the first batch starting past its due offset."""

    def __init__(self, guard: RefetchGuard, tp: Any, records: Any, fetch_offset: int) -> None:
        self._guard = guard
        self._tp = tp
        self._records = records
        self._due = fetch_offset
        self._fetch_offset = fetch_offset
        self._next: Any = None
        self._ended = False

    def size_in_bytes(self) -> int:
        return int(self._records.size_in_bytes())

    def has_next(self) -> bool:
        if self._next is not None:
            return True
        if self._ended or not self._records.has_next():
            return False
        batch = self._records.next_batch()
        if batch is None:
            return False
        base = getattr(batch, "base_offset", None)  # None: a legacy (v0/v1) message set
        if base is not None and base > self._due:
            if not self._guard.accept(self._tp, self._due, base):
                self._ended = True  # the next fetch asks for self._due again
                return False
        elif self._due == self._fetch_offset:
            self._guard.settled(self._tp, self._due)
        self._due = max(self._due, int(batch.next_offset))
        self._next = batch
        return True

    def next_batch(self) -> Any:
        if not self.has_next():
            return None
        batch, self._next = self._next, None
        return batch


class _GuardedPartitionRecords(_fetcher.PartitionRecords):  # type: ignore[misc]
    """aiokafka's ``PartitionRecords`` reading through :data:`GUARD`."""

    def __init__(self, tp: Any, records: Any, aborted: Any, fetch_offset: int, *rest: Any) -> None:
        super().__init__(tp, GUARD.check(tp, records, fetch_offset), aborted, fetch_offset, *rest)


#: The process's guard: aiokafka's fetcher has one ``PartitionRecords`` for every consumer.
GUARD = RefetchGuard()


def install() -> None:
    """Make aiokafka's fetcher read fetched records through :data:`GUARD` (idempotent)."""
    if not issubclass(_fetcher.PartitionRecords, _GuardedPartitionRecords):
        _fetcher.PartitionRecords = _GuardedPartitionRecords
