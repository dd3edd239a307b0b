"""take_batches: a batch is cut when full, at its window (counted from its first event), or
once no event came for the quiet gap (a fetch's burst is in); each event is acked after it.

A minimal stand-in for a faust stream feeds it (the parts take_batches uses); the gaps
between bursts are far longer than the quiet gap and far shorter than the window, so which
rule cut a batch is read from its events, not from a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from agentwatch.streams.batching import take_batches


class FakeStream:
    """What take_batches reads of a faust stream: a channel, processors, acks, waits."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.channel = self._channel()
        self.enable_acks = True
        self.should_stop = False
        self.current_event: Any = None
        self.acked: list[Any] = []
        self._processors: list[Callable[[Any], Awaitable[Any]]] = []
        self._active_agens: set[Any] = set()
        self.loop = asyncio.get_running_loop()
        self.log = logging.getLogger("fake-stream")
        self._drainer: asyncio.Task[None] | None = None

    async def _channel(self) -> AsyncIterator[Any]:
        while True:
            yield await self.queue.get()

    def add_processor(self, processor: Callable[[Any], Awaitable[Any]]) -> None:
        self._processors.append(processor)

    def _enable_passive(self, channel_it: AsyncIterator[Any]) -> None:
        async def drain() -> None:
            async for value in channel_it:
                self.current_event = ("event", value)
                for processor in list(self._processors):
                    await processor(value)

        self._drainer = asyncio.create_task(drain())

    async def wait_for_stopped(self, event: asyncio.Event, timeout: float | None = None) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)
        return self.should_stop

    async def wait(self, event: asyncio.Event) -> None:
        await event.wait()

    async def ack(self, event: Any) -> None:
        self.acked.append(event)

    async def crash(self, exc: BaseException) -> None:
        raise AssertionError(f"take_batches crashed the stream: {exc!r}")

    async def close(self) -> None:
        self.should_stop = True
        if self._drainer is not None:
            self._drainer.cancel()


async def _collect(
    quiet: float | None,
    within: float,
    bursts: list[list[int]],
    gap: float,
    max_: int = 100,
    first_after: float = 0.0,
) -> tuple[list[list[int]], FakeStream]:
    """Feed ``bursts`` (each at once, ``gap`` seconds apart, the first ``first_after`` seconds
    after the batches are asked for) and return the batches cut."""
    stream = FakeStream()
    batches: list[list[int]] = []
    total = sum(len(b) for b in bursts)

    async def consume() -> None:
        quiet_of = (lambda: quiet) if quiet is not None else None
        async for batch in take_batches(stream, max_, lambda: within, quiet_of):
            batches.append([value for _, value in batch])
            if sum(len(b) for b in batches) >= total:
                return

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(first_after)
    for k, burst in enumerate(bursts):
        if k:
            await asyncio.sleep(gap)
        for value in burst:
            stream.queue.put_nowait(value)
    await asyncio.wait_for(consumer, 30)
    await stream.close()
    return batches, stream


def test_a_batch_is_cut_once_its_burst_is_in_not_at_its_window() -> None:
    """Three bursts 0.3 s apart, a 10 s window, a 20 ms quiet gap: one batch per burst."""
    bursts = [[1, 2, 3], [4, 5], [6]]
    batches, stream = asyncio.run(_collect(quiet=0.02, within=10.0, bursts=bursts, gap=0.3))
    assert batches == bursts
    assert [value for _, value in stream.acked] == [1, 2, 3, 4, 5, 6]  # acked after its batch


def test_without_a_quiet_gap_the_window_holds_the_bursts_together() -> None:
    """The same bursts with no quiet cut and a 2 s window: they wait for each other."""
    bursts = [[1, 2, 3], [4, 5], [6]]
    batches, _ = asyncio.run(_collect(quiet=None, within=2.0, bursts=bursts, gap=0.3))
    assert batches == [[1, 2, 3, 4, 5, 6]]


def test_the_window_runs_from_the_first_event_of_the_batch() -> None:
    """No quiet cut, a 1 s window: an event 0.8 s after the batches were asked for, another
    0.4 s later, fall in one batch (the window starts at the first event; counted from the
    start, as faust's take_events does, it would have ended between them). Two events 1.5 s
    apart do not."""
    batches, _ = asyncio.run(
        _collect(quiet=None, within=1.0, bursts=[[1], [2]], gap=0.4, first_after=0.8)
    )
    assert batches == [[1, 2]]
    batches, _ = asyncio.run(_collect(quiet=None, within=1.0, bursts=[[1], [2]], gap=1.5))
    assert batches == [[1], [2]]


def test_a_full_batch_is_cut_at_once_and_the_rest_waits_for_the_next() -> None:
    """A burst of 7 with room for 3: batches of 3, 3 and 1, in order, however long the window."""
    batches, _ = asyncio.run(
        _collect(quiet=0.02, within=10.0, bursts=[[1, 2, 3, 4, 5, 6, 7]], gap=0.0, max_=3)
    )
    assert batches == [[1, 2, 3], [4, 5, 6], [7]]
