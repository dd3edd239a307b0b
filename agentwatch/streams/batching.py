"""Batches of a faust stream whose waiting window is read again before every batch.

faust's ``Stream.take_events(max_, within)`` fixes ``within`` for the life of the generator.
The ingest stage wants two windows: a long one while the worker is busy (fewer, larger batches:
each batch has a fixed cost, measured ~0.2 ms, that a 1 ms window turned into +30 % CPU per
event) and a short one while it is idle (an event, a halt's trigger, is folded without
waiting out the long window). :func:`take_batches` is faust 0.15's ``take_events`` with
``within`` a callable, asked before each batch; acking, the buffer limit and the cleanup are
faust's.

Unlike faust's, the window runs from a batch's first event (not from the end of the batch
before), and a batch is also cut once no event came for ``quiet()`` seconds: the worker's
consumer hands the stream what one fetch returned in one burst, so a pause means the burst is
in. A busy worker then folds each fetch as it lands instead of holding it for the rest of a
50 ms window (issue 13: that wait was the largest part of the median, 30-40 ms of ~80), while
a backlog still fills whole batches (``max_`` events arrive without a pause).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from mode.utils.futures import notify

__all__ = ["take_batches"]


def take_batches(
    stream: Any,
    max_: int,
    within: Callable[[], float],
    quiet: Callable[[], float] | None = None,
) -> AsyncIterator[list[Any]]:
    """Lists of at most ``max_`` faust events of ``stream``, each yielded once full, once
    ``within()`` seconds passed since its first event, or once no event came for ``quiet()``
    seconds (``None``: no such cut); each event is acked after its batch.

    The generator is registered with the stream like faust's own (closed when it stops).
    """
    agen = _take_batches(stream, max_, within, quiet)
    stream._active_agens.add(agen)
    return agen


async def _take_batches(  # faust's take_events, with a window read per batch
    stream: Any, max_: int, within: Callable[[], float], quiet: Callable[[], float] | None
) -> AsyncIterator[list[Any]]:
    buffer: list[Any] = []
    events: list[Any] = []
    buffer_full = asyncio.Event()
    buffer_started = asyncio.Event()  # set by a batch's first event
    started_at = [0.0]  # when it came (the loop's clock)
    buffer_consumed = asyncio.Event()
    stream_enable_acks: bool = stream.enable_acks
    buffer_consuming: asyncio.Future[Any] | None = None
    channel_it = aiter(stream.channel)

    async def add_to_buffer(value: Any) -> Any:
        # the stream is consumed passively (below); this processor fills the buffer
        nonlocal buffer_consuming
        try:
            if buffer_consuming is not None:
                try:
                    await buffer_consuming
                finally:
                    buffer_consuming = None
            buffer.append(value)
            if len(buffer) == 1:
                started_at[0] = asyncio.get_running_loop().time()
                buffer_started.set()
            event = stream.current_event
            if event is None:
                raise RuntimeError("take buffer found current_event is None")
            events.append(event)
            if len(buffer) >= max_:
                buffer_full.set()
                buffer_consumed.clear()  # never more than max_ values in one batch
                await stream.wait(buffer_consumed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            stream.log.exception("Error adding to take buffer: %r", exc)
            await stream.crash(exc)
        return value

    stream.enable_acks = False  # events are acked here, once their batch was handled
    stream.add_processor(add_to_buffer)
    stream._enable_passive(channel_it)
    try:
        while not stream.should_stop:
            window = within()
            if not buffer:
                buffer_started.clear()
                await stream.wait_for_stopped(buffer_started, timeout=window)
            if buffer and not buffer_full.is_set():
                await _fill(stream, buffer, buffer_full, started_at[0] + window, quiet)
            if buffer:
                buffer_consuming = stream.loop.create_future()  # hold the filling meanwhile
                try:
                    yield list(events)
                finally:
                    buffer.clear()
                    for event in events:
                        await stream.ack(event)
                    events.clear()
                    notify(buffer_consuming)
                    buffer_full.clear()
                    buffer_consumed.set()
    finally:
        stream.enable_acks = stream_enable_acks
        stream._processors.remove(add_to_buffer)


async def _fill(
    stream: Any,
    buffer: list[Any],
    buffer_full: asyncio.Event,
    ends: float,
    quiet: Callable[[], float] | None,
) -> None:
    """Wait until the batch started in ``buffer`` is full, the loop's clock reads ``ends``,
    (with ``quiet``) no event came for ``quiet()`` seconds, or the stream stops."""
    loop = asyncio.get_running_loop()
    while not buffer_full.is_set() and not stream.should_stop:
        left = ends - loop.time()
        if left <= 0:
            return
        if quiet is None:
            await stream.wait_for_stopped(buffer_full, timeout=left)
            continue
        held = len(buffer)
        await stream.wait_for_stopped(buffer_full, timeout=min(quiet(), left))
        if len(buffer) == held:  # nothing came meanwhile: the burst is in
            return
