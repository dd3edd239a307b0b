"""Batches of a faust stream whose waiting window is read again before every batch.

faust's ``Stream.take_events(max_, within)`` fixes ``within`` for the life of the generator.
The ingest stage wants two windows: a long one while the worker is busy (fewer, larger batches:
each batch has a fixed cost, measured ~0.2 ms, that a 1 ms window turned into +30 % CPU per
event) and a short one while it is idle (an event, a halt's trigger, is folded without
waiting out the long window). :func:`take_batches` is faust 0.15's ``take_events`` with
``within`` a callable, asked before each wait; acking, the buffer limit and the cleanup are
faust's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from mode.utils.futures import notify

__all__ = ["take_batches"]


def take_batches(stream: Any, max_: int, within: Callable[[], float]) -> AsyncIterator[list[Any]]:
    """Lists of at most ``max_`` faust events of ``stream``, each yielded once full or once
    ``within()`` seconds passed with at least one event; each event is acked after its batch.

    The generator is registered with the stream like faust's own (closed when it stops).
    """
    agen = _take_batches(stream, max_, within)
    stream._active_agens.add(agen)
    return agen


async def _take_batches(  # faust's take_events, with a window read per batch
    stream: Any, max_: int, within: Callable[[], float]
) -> AsyncIterator[list[Any]]:
    buffer: list[Any] = []
    events: list[Any] = []
    buffer_full = asyncio.Event()
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
            await stream.wait_for_stopped(buffer_full, timeout=within())
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
