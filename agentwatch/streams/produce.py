"""Produce records and wait until the broker acknowledges them, retrying until it does.

For records a stage must not lose (dead letters, re-keyed events, anomalies): a failed send
is reported and retried with exponential backoff, forever. The calling stage waits meanwhile,
so its input offsets are not committed past the record; the stall shows in ``/readyz`` and in
the failure counters instead of as a crash or a silent loss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEFAULT_BACKOFF", "Backoff", "Outgoing", "send_acked", "send_all_acked"]

#: Called after every failed attempt with the error and the attempt number (1, 2, ...).
OnFailure = Callable[[BaseException, int], None]
Sleep = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class Backoff:
    """Waits between attempts: ``first_s``, doubling, at most ``max_s``."""

    first_s: float = 0.1
    max_s: float = 5.0

    def delay(self, attempt: int) -> float:
        """The wait after failed attempt number ``attempt`` (1 = the first failure)."""
        return float(min(self.max_s, self.first_s * 2 ** min(attempt - 1, 30)))


DEFAULT_BACKOFF = Backoff()


@dataclass(frozen=True)
class Outgoing:
    """One record to produce (``partition=None``: the producer's partitioner picks)."""

    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    partition: int | None = None


async def _send(topic: Any, record: Outgoing) -> Any:
    return await topic.send(
        key=record.key, value=record.value, headers=record.headers, partition=record.partition
    )


async def send_acked(
    topic: Any,
    record: Outgoing,
    *,
    on_failure: OnFailure,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Sleep = asyncio.sleep,
    failed: int = 0,
) -> int:
    """Send ``record`` to a faust ``topic`` until the broker acks it; return the failures.

    ``failed`` is how many attempts already failed (the first retry waits accordingly).
    Cancellation (worker shutdown) propagates; every other exception is retried.
    """
    if failed:
        await sleep(backoff.delay(failed))
    while True:
        try:
            await (await _send(topic, record))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failed += 1
            on_failure(exc, failed)
            await sleep(backoff.delay(failed))
            continue
        return failed


async def send_all_acked(
    topic: Any,
    records: Sequence[Outgoing],
    *,
    on_failure: OnFailure,
    backoff: Backoff = DEFAULT_BACKOFF,
    sleep: Sleep = asyncio.sleep,
) -> list[int]:
    """Send every record, then wait for every ack; retry failed ones one by one until acked.

    The sends are pipelined (one round trip for the batch when nothing fails). Returns the
    failed attempts per record (0 = acknowledged at once).
    """
    pending: list[Any] = []
    failures = [0] * len(records)
    for i, record in enumerate(records):
        try:
            pending.append(await _send(topic, record))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures[i] = 1
            on_failure(exc, 1)
            pending.append(None)
    for i, fut in enumerate(pending):
        if fut is not None:
            try:
                await fut
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures[i] = 1
                on_failure(exc, 1)
        failures[i] = await send_acked(
            topic,
            records[i],
            on_failure=on_failure,
            backoff=backoff,
            sleep=sleep,
            failed=failures[i],
        )
    return failures
