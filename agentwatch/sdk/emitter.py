"""Emit :class:`~agentwatch.schemas.ActionEvent` s without ever blocking or failing the agent.

:meth:`EventEmitter.emit` builds and validates one event (filling in id, time, agent, fleet and
the current :func:`~agentwatch.sdk.context`) and puts its bytes into a bounded in-memory
buffer; a background task sends the buffer with aiokafka. The usual event is checked and
encoded without pydantic (:mod:`agentwatch.sdk._fastpath`), any other by the model's own
validator and serializer: the same model, bytes and refusals either way. While the broker is
unreachable events wait in the buffer; when it is full the *oldest* are dropped, counted and
reported with a rate-limited warning. Anything that sends events on an agent's behalf (the
monitors, and later framework adapters or a gateway) uses one emitter per agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError
from pydantic import ValidationError

from agentwatch.schemas import ActionEvent
from agentwatch.schemas.events import MAX_EVENT_BYTES
from agentwatch.sdk._fastpath import FastPath, Unsupported, new_event_id
from agentwatch.sdk._support import (
    Backoff,
    Kind,
    RateLimited,
    Risk,
    Status,
    clip,
    describe_error,
    stop_client,
    validation_reason,
)
from agentwatch.sdk.call_context import Scalar, current_context

__all__ = [
    "EMITTER_COUNTERS",
    "MAX_BATCH",
    "MAX_PERMANENT_FAILURES",
    "EventEmitter",
    "new_event_id",
]

log = logging.getLogger("agentwatch.sdk")

MAX_BATCH = 500
"""Events handed to the producer in one go."""
MAX_PERMANENT_FAILURES = 3
"""Attempts before an event the broker rejects for good (not a connection problem) is dropped."""
EMITTER_COUNTERS = ("emitted", "sent", "dropped", "send_errors", "connect_errors", "rejected")
"""The counters of an :class:`EventEmitter` (plus ``buffered`` in :attr:`EventEmitter.stats`)."""


_VALIDATE = ActionEvent.__pydantic_validator__.validate_python
"""pydantic-core's validator of :class:`ActionEvent`: what ``ActionEvent(**fields)`` runs."""
_TO_JSON = ActionEvent.__pydantic_serializer__.to_json
"""pydantic-core's serializer: ``encode_event`` without the ``str`` round trip."""


def _clip(value: object, limit: int) -> str | None:
    """:func:`clip` without a call for the usual case (``None`` or a short string)."""
    if value is None or (type(value) is str and len(value) <= limit):
        return value  # type: ignore[return-value]
    return clip(value, limit)


def is_permanent(exc: BaseException) -> bool:
    """Whether a send failure will not go away by retrying (broker rejected the record)."""
    if isinstance(exc, KafkaTimeoutError | OSError):  # includes TimeoutError
        return False
    if isinstance(exc, KafkaError):
        return not exc.retriable
    return True


@dataclass(slots=True)
class _Pending:
    """An event the sender has taken; the buffer holds bare bytes until then (it is cheaper)."""

    payload: bytes
    failures: int = 0


class EventEmitter:
    """Builds one agent's events and sends them from a bounded buffer.

    Parameters
    ----------
    agent_id, fleet
        Of every event; ``agent_id`` is also the Kafka key.
    bootstrap
        Comma-separated ``host:port`` list of Kafka brokers.
    topic
        Where events go (``<prefix>.actions``).
    buffer_size
        Events that may wait in memory; when full, the oldest are dropped.
    producer
        A started, shared ``AIOKafkaProducer`` (never started or stopped here); by default the
        emitter owns one, created on first send.
    session_id
        Default ``session_id`` of events.
    close_timeout
        How long :meth:`aclose` waits to deliver buffered events.
    max_error_chars, error_detail
        Length limit of ``error`` texts; whether they carry the exception message.
    kafka_options
        Connection settings of the producer; never logged.
    """

    def __init__(
        self,
        agent_id: str,
        fleet: str,
        *,
        bootstrap: str,
        topic: str,
        buffer_size: int = 10_000,
        producer: Any = None,
        session_id: str | None = None,
        close_timeout: float = 5.0,
        max_error_chars: int = 1024,
        error_detail: bool = True,
        kafka_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.fleet = fleet
        self.bootstrap = bootstrap
        self.topic = topic
        self.buffer_size = buffer_size
        self.session_id = session_id
        self.close_timeout = close_timeout
        self.max_error_chars = min(max_error_chars, 4096)
        self.error_detail = error_detail
        self.kafka_options = dict(kafka_options or {})
        self._shared_producer = producer
        self._key = agent_id.encode()
        self._fast = FastPath()
        # buffer (shared between the caller's threads and the loop thread)
        self._lock = threading.Lock()
        self._queue: deque[bytes | _Pending] = deque()  # _Pending: taken, failed, put back
        self._in_flight = 0
        self._counts = dict.fromkeys(EMITTER_COUNTERS, 0)
        self._warn = RateLimited()
        self._unreported_drops = 0
        # runtime (created by start())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._drainer_idle = False
        self._producer: Any = None
        self._drain_task: asyncio.Task[None] | None = None
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the sender task on the running event loop."""
        if self._loop is not None:
            raise RuntimeError("this EventEmitter was already started")
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._wake = asyncio.Event()
        self._drain_task = asyncio.create_task(self._drain_loop(), name="agentwatch-sender")

    async def aclose(self) -> None:
        """Deliver buffered events (up to ``close_timeout``), then stop the sender.

        Idempotent. Events that could not be delivered are counted as dropped and reported.
        """
        if self._closed:
            return
        self._closed = True
        if self._loop is None:  # never started
            self.account_undelivered()
            return
        await self.flush(self.close_timeout)
        task = self._drain_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=max(self.close_timeout, 0.5))
        if self._producer is not None and self._producer is not self._shared_producer:
            await stop_client(self._producer, max(self.close_timeout, 0.5))
        self._producer = None
        self.account_undelivered()

    async def flush(self, max_wait: float | None = None) -> bool:
        """Wait until every buffered event is acknowledged (or ``max_wait`` seconds passed).

        Returns whether the buffer is empty. Needs a started emitter.
        """
        deadline = None if max_wait is None else time.monotonic() + max_wait
        while self.buffered() > 0:
            if self._drain_task is None or self._drain_task.done():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._wakeup()
            await asyncio.sleep(0.01)
        return True

    def account_undelivered(self) -> None:
        """Count whatever is still buffered as dropped (at close) and report it."""
        with self._lock:
            lost = len(self._queue) + self._in_flight
            self._queue.clear()
            self._in_flight = 0
            self._counts["dropped"] += lost
        if lost:
            log.warning(
                "agentwatch: agent %s closed with %d events not delivered to %s on %s "
                "(broker unreachable?); they are lost",
                self.agent_id,
                lost,
                self.topic,
                self.bootstrap,
            )
        self._report_drops(force=True)

    # -- emitting -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, int]:
        """The counters (see :attr:`agentwatch.sdk.Monitor.stats`) and ``buffered``."""
        with self._lock:
            out = dict(self._counts)
            out["buffered"] = len(self._queue) + self._in_flight
        return out

    def buffered(self) -> int:
        """Events waiting or in flight."""
        with self._lock:
            return len(self._queue) + self._in_flight

    def emit(
        self,
        action: str,
        *,
        kind: Kind = "tool",
        status: Status = "ok",
        error: str | BaseException | None = None,
        risk: Risk | None = None,
        target: str | None = None,
        approved_by: str | None = None,
        session_id: str | None = None,
        model: str | None = None,
        cost_usd: float = 0.0,
        input_tokens: int = 0,
        output_tokens: int = 0,
        latency_ms: float = 0.0,
        attributes: Mapping[str, Scalar] | None = None,
    ) -> ActionEvent | None:
        """Build one event and buffer it; never blocks, never raises.

        See :meth:`agentwatch.sdk.Monitor.emit`. Returns the event, or ``None`` if it was
        invalid (logged and counted as ``rejected``).
        """
        return self.emit_fields(
            action,
            kind,
            status,
            error,
            risk,
            target,
            approved_by,
            session_id,
            model,
            cost_usd,
            input_tokens,
            output_tokens,
            latency_ms,
            attributes,
        )

    def emit_fields(  # noqa: PLR0917 - positional: 14 keywords cost ~1.5 us a call on a slow host
        self,
        action: str,
        kind: Kind,
        status: Status,
        error: str | BaseException | None,
        risk: Risk | None,
        target: str | None,
        approved_by: str | None,
        session_id: str | None,
        model: str | None,
        cost_usd: float,
        input_tokens: int,
        output_tokens: int,
        latency_ms: float,
        attributes: Mapping[str, Scalar] | None,
        /,
    ) -> ActionEvent | None:
        """:meth:`emit` with every field given, in this order (what the monitors call)."""
        try:
            ctx = current_context()
            if isinstance(error, BaseException):
                error = describe_error(error, self.max_error_chars, self.error_detail)
            attrs = dict(ctx.attributes) if ctx.attributes else {}
            if attributes:
                attrs.update(attributes)
            if session_id is None:
                session_id = ctx.session_id or self.session_id
            if target is None:
                target = ctx.target
            if approved_by is None:
                approved_by = ctx.approved_by
            try:
                event, payload = self._fast.build(
                    self.agent_id,
                    self.fleet,
                    action,
                    kind,
                    status,
                    error,
                    risk,
                    target,
                    approved_by,
                    session_id,
                    model,
                    cost_usd,
                    input_tokens,
                    output_tokens,
                    latency_ms,
                    attrs,
                    self.max_error_chars,
                )
            except Unsupported:  # pydantic decides (and words any refusal), as before
                # the same checks as ActionEvent(**fields), without BaseModel.__init__'s cost
                event = _VALIDATE(
                    {
                        "event_id": new_event_id(),
                        "ts": datetime.now(UTC),
                        "agent_id": self.agent_id,
                        "fleet": self.fleet,
                        "session_id": _clip(session_id, 128),
                        "action": action,
                        "kind": kind,
                        "status": status,
                        "error": _clip(error, self.max_error_chars),
                        "risk": risk,
                        "target": _clip(target, 1024),
                        "approved_by": _clip(approved_by, 128),
                        "model": _clip(model, 128),
                        "cost_usd": float(cost_usd),
                        "input_tokens": int(input_tokens),
                        "output_tokens": int(output_tokens),
                        "latency_ms": float(latency_ms),
                        "attributes": attrs,
                    }
                )
                payload = _TO_JSON(event, exclude_none=True)  # == encode_event(event)
        except ValidationError as exc:
            self._reject(action, validation_reason(exc))
            return None
        except Exception as exc:
            self._reject(action, f"{type(exc).__name__}")
            return None
        if len(payload) > MAX_EVENT_BYTES:
            self._reject(action, f"{len(payload)} bytes > {MAX_EVENT_BYTES} (trim attributes)")
            return None
        self.enqueue(payload)
        return event

    def enqueue(self, payload: bytes) -> None:
        """Buffer one encoded event (dropping the oldest when full); never raises."""
        try:
            with self._lock:
                counts = self._counts
                counts["emitted"] += 1
                if self._closed:
                    counts["dropped"] += 1
                    self._unreported_drops += 1
                else:
                    queue = self._queue
                    if len(queue) >= self.buffer_size:
                        queue.popleft()
                        counts["dropped"] += 1
                        self._unreported_drops += 1
                    queue.append(payload)
            if self._unreported_drops:
                self._report_drops()
            if self._drainer_idle:
                self._wakeup()
        except Exception:  # never let monitoring break the agent
            log.debug("agentwatch: enqueue failed", exc_info=True)

    def _reject(self, action: str, reason: str) -> None:
        with self._lock:
            self._counts["rejected"] += 1
        self._warn.warning(
            "reject",
            "agentwatch: agent %s: invalid event for action %r not emitted: %s",
            self.agent_id,
            clip(action, 128),
            reason,
        )

    def _report_drops(self, force: bool = False) -> None:
        with self._lock:
            n, self._unreported_drops = self._unreported_drops, 0
            total = self._counts["dropped"]
        if not n:
            return
        if force:
            log.warning(
                "agentwatch: agent %s dropped %d events (%d in total)", self.agent_id, n, total
            )
            return
        self._warn.warning(
            "drops",
            "agentwatch: agent %s dropped events: buffer of %d full (broker %s unreachable?) "
            "or monitor closed; %d dropped in total",
            self.agent_id,
            self.buffer_size,
            self.bootstrap,
            total,
        )

    # -- sending ------------------------------------------------------------------------------

    def _wakeup(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or not self._drainer_idle:
            return
        self._drainer_idle = False
        try:
            if threading.get_ident() == self._loop_thread:
                wake.set()
            else:
                loop.call_soon_threadsafe(wake.set)
        except RuntimeError:  # loop closed
            pass

    def _take_batch(self) -> list[_Pending]:
        with self._lock:
            n = min(len(self._queue), MAX_BATCH)
            batch = [self._queue.popleft() for _ in range(n)]
            self._in_flight += n
        return [item if isinstance(item, _Pending) else _Pending(item) for item in batch]

    def _settle(self, batch_size: int, sent: int, retry: list[_Pending], lost: int) -> None:
        """Book the outcome of one batch; ``retry`` goes back to the front of the queue."""
        with self._lock:
            self._in_flight -= batch_size
            self._counts["sent"] += sent
            self._counts["dropped"] += lost
            self._unreported_drops += lost
            for item in reversed(retry):
                if len(self._queue) >= self.buffer_size:  # full: the retries are the oldest
                    self._counts["dropped"] += 1
                    self._unreported_drops += 1
                else:
                    self._queue.appendleft(item)
        if self._unreported_drops:
            self._report_drops()

    async def _drain_loop(self) -> None:
        assert self._wake is not None
        backoff = Backoff(0.1, 5.0)
        while True:
            producer = await self._ensure_producer()
            if producer is None:
                await asyncio.sleep(backoff.next())
                continue
            batch = self._take_batch()
            if not batch:
                self._wake.clear()
                self._drainer_idle = True
                if not self._queue:  # re-check: an emit may have raced the idle flag
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), 1.0)
                self._drainer_idle = False
                continue
            if await self._send_batch(producer, batch):
                backoff.reset()
            else:
                await asyncio.sleep(backoff.next())

    async def _ensure_producer(self) -> Any:
        if self._producer is not None:
            return self._producer
        if self._shared_producer is not None:
            self._producer = self._shared_producer
            return self._producer
        options = {"request_timeout_ms": 10_000, **self.kafka_options}
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5, **options)
        try:
            await producer.start()
        except asyncio.CancelledError:
            await stop_client(producer, max(self.close_timeout, 0.5))
            raise
        except Exception as exc:
            await stop_client(producer, max(self.close_timeout, 0.5))
            with self._lock:
                self._counts["connect_errors"] += 1
            self._warn.warning(
                "connect",
                "agentwatch: cannot connect to %s to send events of agent %s: %s; %d buffered, "
                "retrying",
                self.bootstrap,
                self.agent_id,
                describe_error(exc, 300, True),
                self.buffered(),
            )
            return None
        log.info("agentwatch: agent %s sending events to %s", self.agent_id, self.bootstrap)
        self._producer = producer
        return producer

    async def _send_batch(self, producer: Any, batch: list[_Pending]) -> bool:
        """Send one batch; return whether everything was delivered."""
        futures: list[Any] = []
        handoff_error: BaseException | None = None
        for item in batch:
            try:
                futures.append(await producer.send(self.topic, item.payload, key=self._key))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                handoff_error = exc
                break
        results: list[Any] = list(await asyncio.gather(*futures, return_exceptions=True))
        if handoff_error is not None:
            results.extend([handoff_error] * (len(batch) - len(futures)))
        sent = 0
        retry: list[_Pending] = []
        lost = 0
        first_error: BaseException | None = None
        for item, result in zip(batch, results, strict=True):
            if not isinstance(result, BaseException):
                sent += 1
                continue
            first_error = first_error or result
            if is_permanent(result):
                item.failures += 1
                if item.failures >= MAX_PERMANENT_FAILURES:
                    lost += 1
                    continue
            retry.append(item)
        failed = len(batch) - sent
        if failed:
            with self._lock:
                self._counts["send_errors"] += failed
            assert first_error is not None
            self._warn.warning(
                "send",
                "agentwatch: sending %d events of agent %s to %s failed: %s; %d will be retried",
                failed,
                self.agent_id,
                self.topic,
                describe_error(first_error, 300, True),
                len(retry),
            )
        self._settle(len(batch), sent, retry, lost)
        return failed == 0
