"""Per-key locks: concurrent read-modify-write with awaits in between stays serial per key."""

from __future__ import annotations

import asyncio
import random

import pytest

from agentwatch.streams.keylocks import KeyedLocks


async def test_concurrent_read_modify_write_loses_nothing_per_key() -> None:
    locks = KeyedLocks()
    store: dict[str, list[int]] = {"a": [], "b": []}
    rng = random.Random(7)

    async def append(key: str, value: int) -> None:
        async with locks.hold(key):
            current = list(store[key])  # read
            await asyncio.sleep(rng.random() / 1000)  # an await (a broker ack) in between
            store[key] = [*current, value]  # write

    tasks = [append("a" if i % 2 else "b", i) for i in range(200)]
    await asyncio.gather(*tasks)
    assert sorted(store["a"]) == list(range(1, 200, 2))
    assert sorted(store["b"]) == list(range(0, 200, 2))
    assert store["a"] == sorted(store["a"])  # FIFO: in arrival order
    assert len(locks) == 0  # no lock outlives its users


async def test_without_the_lock_the_same_workload_loses_updates() -> None:
    """The control experiment: the workload above does lose writes unless serialized."""
    store: list[int] = []

    async def append(value: int) -> None:
        current = list(store)
        await asyncio.sleep(0)
        store[:] = [*current, value]

    await asyncio.gather(*(append(i) for i in range(20)))
    assert len(store) < 20


async def test_different_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()
    entered: list[str] = []

    async def hold(key: str) -> None:
        async with locks.hold(key):
            entered.append(key)
            await release.wait()

    slow = asyncio.create_task(hold("a"))
    await asyncio.sleep(0)
    same = asyncio.create_task(hold("a"))
    other = asyncio.create_task(hold("b"))
    await asyncio.sleep(0.01)
    assert entered == ["a", "b"] and locks.locked("a") and len(locks) == 2
    release.set()
    await asyncio.gather(slow, same, other)
    assert entered == ["a", "b", "a"] and len(locks) == 0


async def test_a_cancelled_waiter_and_a_failing_holder_leave_no_lock_behind() -> None:
    locks = KeyedLocks()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("k"):
            await release.wait()
            raise RuntimeError("boom")

    async def waiter() -> None:
        async with locks.hold("k"):
            pass

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0.01)
    second.cancel()
    release.set()
    with pytest.raises(RuntimeError):
        await first
    with pytest.raises(asyncio.CancelledError):
        await second
    assert len(locks) == 0 and not locks.locked("k")
    async with locks.hold("k"):  # still usable
        assert locks.locked("k")
