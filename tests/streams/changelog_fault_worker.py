"""``agentwatch worker`` with a fault in its baselines changelog (a test helper, not a test).

Run as ``python -m tests.streams.changelog_fault_worker`` (same settings and environment as
``agentwatch worker``). It holds the worker at the point where a SIGKILL loses state if offsets
run ahead of the changelog, which a real worker reaches only by chance (a slow broker, a busy
event loop):

- the **first** record written to the ``baselines`` changelog is produced (the broker stores
  it) but its acknowledgement is never processed, as when the process dies between the two, so
  its offset is never recorded as persisted in the local store;
- every **later** ``baselines`` changelog record waits in faust's producer buffer for ever,
  as behind a slow broker.

The worker otherwise runs normally: it folds events, writes its state to RocksDB, and commits
offsets when faust lets it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.topics import Topic
from faust.transport.producer import ProducerBuffer

from agentwatch.cli import main

__all__ = ["install"]

SUFFIX = "-baselines-changelog"


def _topic(fut: Any) -> str:
    return str(fut.message.channel.get_topic_name())


def install() -> None:
    """Patch faust's producer buffer and publish callback as described above."""
    produced = 0
    send_pending = ProducerBuffer._send_pending
    on_published = Topic._on_published

    async def held_send_pending(self: Any, fut: Any) -> None:
        nonlocal produced
        if _topic(fut).endswith(SUFFIX):
            produced += 1
            if produced > 1:
                await asyncio.Event().wait()  # never sent
        await send_pending(self, fut)

    def lost_ack(self: Any, fut: Any, message: Any, producer: Any, state: Any) -> None:
        if _topic(message).endswith(SUFFIX):
            return  # acknowledged by the broker, never processed here
        on_published(self, fut, message=message, producer=producer, state=state)

    ProducerBuffer._send_pending = held_send_pending  # type: ignore[method-assign]
    Topic._on_published = lost_ack  # type: ignore[method-assign]


if __name__ == "__main__":
    install()
    main()
