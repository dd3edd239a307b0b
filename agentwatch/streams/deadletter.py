"""Dead letters: every record a stage rejects reaches ``<prefix>.deadletter``, whatever it holds.

A record of any size or content becomes a bounded dead letter (:func:`bounded_record`): its
value cut to a prefix of at most ``deadletter_max_bytes``, its key to :data:`MAX_KEY_BYTES`,
and headers that say what it was and why it was rejected:

=================================  ============================================================
``agentwatch.reason``              closed reason code (``bad_json``, ``too_large``, ...)
``agentwatch.detail``              what was wrong, for people (escaped, at most 1 KiB)
``agentwatch.source.topic``        where the record was read: topic,
``agentwatch.source.partition``    partition
``agentwatch.source.offset``       and offset
``agentwatch.value.length``        length of the full original value in bytes
``agentwatch.value.sha256``        SHA-256 (hex) of the full original value
``agentwatch.value.truncated``     ``true`` when the dead letter holds a prefix only
``agentwatch.key.length``          length of the original key (absent for a key-less record)
``agentwatch.key.truncated``       ``true`` when the key was cut
=================================  ============================================================

:class:`DeadLetters` sends it and waits for the broker's ack, retrying with backoff until it
is acknowledged (:func:`~agentwatch.streams.produce.send_acked`): a failed send is counted
(``agentwatch_deadletter_send_failures_total``), never raised, and the stage waits instead of
committing past a record it could not set aside. Warnings are rate limited: one summary line
per interval with counts by reason, not one line per record.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentwatch.logtext import escape
from agentwatch.streams.metrics import WorkerMetrics
from agentwatch.streams.produce import DEFAULT_BACKOFF, Backoff, Outgoing, send_all_acked

__all__ = ["MAX_DETAIL_BYTES", "MAX_KEY_BYTES", "DeadLetters", "bounded_record"]

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
MAX_DETAIL_BYTES = 1024
#: Room for the key and the headers on top of the value prefix (see Settings validation).
OVERHEAD_BYTES = MAX_KEY_BYTES + MAX_DETAIL_BYTES + 1024


def _cut_utf8(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", "ignore").encode("utf-8")


def bounded_record(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
    max_bytes: int,
) -> Outgoing:
    """The dead letter of one rejected record: bounded key and value, descriptive headers.

    Examples
    --------
    >>> d = bounded_record(topic="t", partition=0, offset=7, key=b"a1", value=b"x" * 10,
    ...                    reason="too_large", detail="10 bytes", max_bytes=4)
    >>> headers = dict(d.headers)
    >>> d.value, headers["agentwatch.value.length"], headers["agentwatch.value.truncated"]
    (b'xxxx', b'10', b'true')
    """
    body = b"" if value is None else bytes(value)
    headers = [
        ("agentwatch.reason", _cut_utf8(escape(reason, 64), 128)),
        ("agentwatch.detail", _cut_utf8(escape(detail, MAX_DETAIL_BYTES), MAX_DETAIL_BYTES)),
        ("agentwatch.source.topic", _cut_utf8(escape(topic, 249), 512)),
        ("agentwatch.source.partition", str(partition).encode()),
        ("agentwatch.source.offset", str(offset).encode()),
        ("agentwatch.value.length", str(len(body)).encode()),
        ("agentwatch.value.sha256", hashlib.sha256(body).hexdigest().encode()),
        ("agentwatch.value.truncated", b"true" if len(body) > max_bytes else b"false"),
    ]
    out_key = None
    if key is not None:
        key = bytes(key)
        headers.append(("agentwatch.key.length", str(len(key)).encode()))
        if len(key) > MAX_KEY_BYTES:
            headers.append(("agentwatch.key.truncated", b"true"))
        out_key = key[:MAX_KEY_BYTES]
    return Outgoing(key=out_key, value=body[:max_bytes], headers=headers)


class _Summary:
    """One WARNING line per interval with the dead letters since the last one, by reason."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.last: tuple[str, int, int, str, str] | None = None
        self.emitted_at = float("-inf")

    def note(self, topic: str, partition: int, offset: int, reason: str, detail: str) -> None:
        self.counts[reason] += 1
        self.last = (topic, partition, offset, reason, detail)
        self.flush()

    def flush(self, force: bool = False) -> bool:
        now = self.clock()
        if not self.counts or (not force and now - self.emitted_at < self.interval_s):
            return False
        since = now - self.emitted_at
        window = f"in the last {since:.0f}s" if since != float("inf") else "after a quiet spell"
        total = sum(self.counts.values())
        by_reason = ", ".join(f"{r}={n}" for r, n in sorted(self.counts.items()))
        assert self.last is not None
        topic, partition, offset, reason, detail = self.last
        log.warning(
            "dead-lettered %d record(s) %s (%s); last: topic=%s partition=%s offset=%s "
            "reason=%s: %s",
            total,
            window,
            by_reason,
            escape(topic, 249),
            partition,
            offset,
            escape(reason, 64),
            escape(detail, 200),
        )
        self.counts.clear()
        self.emitted_at = now
        return True


class DeadLetters:
    """Sets rejected records aside on the dead-letter topic; used by every stage.

    Parameters
    ----------
    topic
        The faust dead-letter topic.
    metrics
        ``deadletters`` (by reason, counted once acknowledged) and ``deadletter_send_failures``.
    max_bytes
        Longest value prefix kept (``Settings.deadletter_max_bytes``).
    log_interval_s
        At most one summary warning per this many seconds.
    backoff
        Waits between failed sends.
    clock, sleep
        Injected for tests.
    """

    def __init__(
        self,
        *,
        topic: Any,
        metrics: WorkerMetrics,
        max_bytes: int,
        log_interval_s: float = 10.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] | None = None,
    ) -> None:
        self.topic = topic
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.backoff = backoff
        self.clock = clock
        self.sleep = sleep
        self.log_interval_s = log_interval_s
        self._summary = _Summary(log_interval_s, clock)
        self._failure_logged_at = float("-inf")
        #: Dead letters being retried right now (a stage waits on each).
        self.retrying = 0

    async def send(self, message: Any, reason: str, detail: str) -> None:
        """Dead-letter one faust ``message`` (topic, partition, offset, key, value).

        Returns once the broker acknowledged it; never raises (but cancellation).
        """
        await self.send_all([(message, reason, detail)])

    async def send_all(self, rejects: Sequence[tuple[Any, str, str]]) -> None:
        """Dead-letter ``(message, reason, detail)`` triples; faust events are accepted too.

        The sends are pipelined; returns once every one was acknowledged; never raises (but
        cancellation).
        """
        messages = [getattr(m, "message", m) for m, _, _ in rejects]
        records = [
            bounded_record(
                topic=str(message.topic),
                partition=int(message.partition),
                offset=int(message.offset),
                key=message.key,
                value=message.value,
                reason=reason,
                detail=detail,
                max_bytes=self.max_bytes,
            )
            for message, (_, reason, detail) in zip(messages, rejects, strict=True)
        ]
        retrying = 0

        def failed(exc: BaseException, attempt: int) -> None:
            nonlocal retrying
            if attempt == 1:
                retrying += 1
                self.retrying += 1
                self.metrics.deadletter_retrying.set(self.retrying)
            self._failed(exc, attempt)

        kwargs: dict[str, Any] = {} if self.sleep is None else {"sleep": self.sleep}
        try:
            failures = await send_all_acked(
                self.topic, records, on_failure=failed, backoff=self.backoff, **kwargs
            )
        finally:
            if retrying:
                self.retrying -= retrying
                self.metrics.deadletter_retrying.set(self.retrying)
        if retrying:
            log.warning(
                "%d dead letter(s) acknowledged after %d failed attempt(s)",
                retrying,
                sum(failures),
            )
        for message, (_, reason, detail) in zip(messages, rejects, strict=True):
            self.metrics.deadletters.labels(reason).inc()
            self._summary.note(message.topic, message.partition, message.offset, reason, detail)

    def _failed(self, exc: BaseException, attempt: int) -> None:
        self.metrics.deadletter_send_failures.inc()
        now = self.clock()
        if now - self._failure_logged_at >= self.log_interval_s:
            self._failure_logged_at = now
            log.error(
                "dead letter not acknowledged (attempt %d; retrying, the stage waits): %s",
                attempt,
                escape(repr(exc), 300),
            )

    def flush_log(self, force: bool = False) -> bool:
        """Write the pending summary line if its interval has passed (or ``force``).

        Call it periodically, and with ``force`` at shutdown.
        """
        return self._summary.flush(force)
