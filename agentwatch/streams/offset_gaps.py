"""Holes in the offsets a stage reads: offsets of a partition it never received (pure logic).

The ingest stage assumes each partition of the actions topic reaches it without holes: an
event that never reached it is in no baseline, and once a later event of the same agent is
folded, the replay guard skips it even when it is read again (its offset is below the one
stored with the agent's state). faust drops records it fetched whenever a rebalance or a
table recovery ends and relies on a seek to read them again (see
:mod:`agentwatch.streams.transport`); :class:`OffsetGaps` makes a seek that missed some of
them visible instead of silent.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["OffsetGaps"]

K = TypeVar("K", bound=Hashable)


class OffsetGaps(Generic[K]):
    """The next offset expected of every partition read, and how many a message skipped.

    The next offset expected is one past the highest offset received since the partition was
    first read (or last forgotten): a partition may start anywhere, so its first message sets
    it; an offset at or below it is a re-read (a seek back, a rewind to the committed
    offsets), never a hole, and offsets received before that re-read are not missing either.
    Only an offset beyond every offset received leaves a hole: the offsets between.

    Legitimate holes exist: a transactional producer's commit markers and aborted records
    take offsets a consumer never receives, and records removed by retention before they
    were read are gone. agentwatch's own producers are not transactional.

    Examples
    --------
    >>> gaps: OffsetGaps[str] = OffsetGaps()
    >>> [gaps.see("p0", o) for o in (40, 41, 45, 46)]  # 42..44 never received
    [0, 0, 3, 0]
    >>> [gaps.see("p0", o) for o in (30, 31, 47)]  # a re-read from 30, then on
    [0, 0, 0]
    >>> gaps.expected("p0"), gaps.forget(["p0"]), gaps.see("p0", 5)
    (48, None, 0)
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[K, int] = {}

    def see(self, tp: K, offset: int) -> int:
        """Note that the message at ``offset`` of ``tp`` was received; return how many offsets
        before it were skipped (0: none, a re-read, or the partition's first message)."""
        expected = self._next.get(tp)
        if expected is None:
            self._next[tp] = offset + 1
            return 0
        if offset < expected:
            return 0
        self._next[tp] = offset + 1
        return offset - expected

    def expected(self, tp: K) -> int | None:
        """The next offset expected of ``tp``; ``None`` before its first message."""
        return self._next.get(tp)

    def forget(self, tps: Iterable[K]) -> None:
        """Forget partitions (revoked: another worker may read them meanwhile); the next
        message of each starts it again wherever it is."""
        for tp in tps:
            self._next.pop(tp, None)

    def partitions(self) -> list[K]:
        """The partitions with an offset expected."""
        return list(self._next)
