"""Per-key asyncio locks that exist only while someone holds or waits for them.

The responder serializes every read-compute-publish-store of one agent's control and incident
state with ``async with locks.hold(agent_id)``: two changes of one agent never interleave
across their awaits (broker acks), while different agents proceed concurrently. A lock is
dropped as soon as its last holder or waiter leaves, so memory does not grow with the number
of agents ever seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["KeyedLocks"]


@dataclass
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class KeyedLocks:
    """One FIFO :class:`asyncio.Lock` per key, created on demand and dropped when unused.

    Examples
    --------
    >>> import asyncio
    >>> locks = KeyedLocks()
    >>> async def change(key: str, log: list[str]) -> None:
    ...     async with locks.hold(key):
    ...         log.append(f"{key} in")
    ...         await asyncio.sleep(0)
    ...         log.append(f"{key} out")
    >>> async def main() -> list[str]:
    ...     log: list[str] = []
    ...     await asyncio.gather(change("a", log), change("a", log))
    ...     return log
    >>> asyncio.run(main()), len(locks)
    (['a in', 'a out', 'a in', 'a out'], 0)
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """Keys with a holder or a waiter right now."""
        return len(self._entries)

    def locked(self, key: str) -> bool:
        """Whether someone holds ``key``'s lock."""
        entry = self._entries.get(key)
        return entry is not None and entry.lock.locked()

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``'s lock for the block (waiters get it in arrival order)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0 and self._entries.get(key) is entry:
                del self._entries[key]
