"""Delivery of notifications: routing by severity and fleet, idempotency, pacing and retries.

:class:`Dispatcher` sends one :class:`~agentwatch.schemas.Notification` to every destination
its severity routes to (``settings.routes``, overridden per fleet by
``settings.fleet_routes``), concurrently. Each destination is paced by a token bucket and
retried with capped exponential backoff and jitter until it succeeds, for as long as the
errors are retryable: an outage delays a page, it never drops one. A destination that rejects
the notification is reported in the :class:`DeliveryResult` for the caller to audit.

Idempotency: ``"<destination>:<notification_id>"`` is recorded in a :class:`DeliveryLog` (a
faust table in the worker) right after that destination accepted it, and a recorded key is
never sent again, so a notification replayed after a crash pages at most once more per
destination (only if the crash fell between the service's acceptance and the record).

Refreshing destinations (Alertmanager, see
:class:`~agentwatch.alerting.notifiers.base.RefreshingNotifier`): what each accepted is kept in a
:class:`~agentwatch.alerting.firing.FiringStore` (a faust table in the worker), and
:meth:`Dispatcher.refresh_due` posts every incident still firing there again each resend
interval, so the service never times an open incident out, also after a restart.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

import agentwatch.alerting.notifiers  # noqa: F401 - registers the built-in notifiers
from agentwatch.alerting.firing import FiringStore, merge_firing
from agentwatch.alerting.notifiers.base import (
    NOTIFIERS,
    DeliveryError,
    Notifier,
    RefreshingNotifier,
)
from agentwatch.alerting.ratelimit import Rate, TokenBucket
from agentwatch.config import ConfigError, Settings, Severity
from agentwatch.schemas import Notification

__all__ = [
    "DeliveryLog",
    "DeliveryResult",
    "DestinationOutcome",
    "Dispatcher",
    "MemoryDeliveryLog",
    "NotificationMetrics",
    "backoff_delay",
    "build_notifiers",
    "delivery_key",
    "routed_notifiers",
    "validate_routes",
]

logger = logging.getLogger(__name__)

_DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)


class DeliveryLog(Protocol):
    """Which destinations already accepted which notification (a faust table in the worker)."""

    def delivered(self, key: str) -> bool:
        """Whether ``key`` (``"<destination>:<notification_id>"``) was recorded."""
        ...

    def record(self, key: str) -> None:
        """Record that ``key`` was delivered."""
        ...


class MemoryDeliveryLog:
    """A :class:`DeliveryLog` over a mutable mapping (a dict by default)."""

    def __init__(self, store: MutableMapping[str, Any] | None = None) -> None:
        self.store: MutableMapping[str, Any] = store if store is not None else {}

    def delivered(self, key: str) -> bool:
        """Whether ``key`` was recorded."""
        return key in self.store

    def record(self, key: str) -> None:
        """Record ``key``."""
        self.store[key] = True


def delivery_key(destination: str, notification_id: str) -> str:
    """The idempotency key of one notification at one destination.

    Examples
    --------
    >>> delivery_key("slack", "inc-1:0")
    'slack:inc-1:0'
    """
    return f"{destination}:{notification_id}"


@dataclass(frozen=True)
class DestinationOutcome:
    """What happened at one destination: ``sent``, ``skipped`` (already sent) or ``failed``."""

    destination: str
    status: Literal["sent", "skipped", "failed"]
    attempts: int = 0
    error: str | None = None
    reason: str | None = None


@dataclass(frozen=True)
class DeliveryResult:
    """The outcome of :meth:`Dispatcher.deliver` for one notification."""

    notification_id: str
    outcomes: tuple[DestinationOutcome, ...] = ()
    unconfigured: tuple[str, ...] = ()
    """Destinations the routes name that have no configured notifier (skipped)."""

    def _with(self, status: str) -> tuple[str, ...]:
        return tuple(o.destination for o in self.outcomes if o.status == status)

    @property
    def sent(self) -> tuple[str, ...]:
        """Destinations that accepted the notification now."""
        return self._with("sent")

    @property
    def skipped(self) -> tuple[str, ...]:
        """Destinations that had already accepted it (the delivery log says so)."""
        return self._with("skipped")

    @property
    def failed(self) -> tuple[DestinationOutcome, ...]:
        """Destinations that rejected it (non-retryable); audit or dead-letter these."""
        return tuple(o for o in self.outcomes if o.status == "failed")

    @property
    def ok(self) -> bool:
        """No destination rejected the notification."""
        return not self.failed


class NotificationMetrics:
    """Delivery metrics on an injected registry. Labels are bounded: no agent or incident."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.sent = Counter(
            "agentwatch_notifications_sent",
            "Notifications a destination accepted, by notifier and event action.",
            ["notifier", "event"],
            registry=r,
        )
        self.failures = Counter(
            "agentwatch_notification_failures",
            "Failed delivery attempts by reason; rejected/internal ones are not retried.",
            ["notifier", "reason"],
            registry=r,
        )
        self.skipped = Counter(
            "agentwatch_notifications_skipped",
            "Deliveries skipped because the delivery log already had them (replays).",
            ["notifier"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "agentwatch_notification_delivery_seconds",
            "From the first attempt to acceptance, including pacing and retries.",
            ["notifier"],
            buckets=_DELIVERY_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "agentwatch_notifications_pending",
            "Deliveries in progress (waiting for a token, sending or backing off).",
            ["notifier"],
            registry=r,
        )
        self.refreshes = Counter(
            "agentwatch_notification_refreshes",
            "Re-posts of the incidents still firing at a refreshing notifier (Alertmanager), "
            "by result (ok, failed).",
            ["notifier", "result"],
            registry=r,
        )
        self.firing = Gauge(
            "agentwatch_notification_firing_incidents",
            "Incidents a refreshing notifier holds firing (posted again every resend interval).",
            ["notifier"],
            registry=r,
        )


def backoff_delay(
    attempt: int,
    *,
    initial: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential (``initial * 2**(attempt-1)``) with "equal jitter" (half fixed, half random),
    at least the service's ``retry_after`` hint, and never more than ``cap``.

    Examples
    --------
    >>> backoff_delay(1, initial=1.0, cap=60.0, rng=random.Random(0)) <= 1.0
    True
    >>> backoff_delay(30, initial=1.0, cap=60.0, retry_after=5.0) <= 60.0
    True
    """
    rng = rng or random.Random()
    base = min(cap, initial * 2.0 ** min(attempt - 1, 62))
    delay = base / 2.0 + rng.uniform(0.0, base / 2.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return min(delay, cap)


def routed_notifiers(settings: Settings) -> dict[str, str]:
    """Every destination any route names -> the settings key that first names it."""
    named: dict[str, str] = {}
    for severity, names in settings.routes.items():
        for name in names:
            named.setdefault(name, f"routes.{severity}")
    for fleet, routes in settings.fleet_routes.items():
        for severity, names in routes.items():
            for name in names:
                named.setdefault(name, f"fleet_routes.{fleet}.{severity}")
    return named


def validate_routes(settings: Settings) -> None:
    """Raise :class:`ConfigError` if a route names a notifier that is not registered."""
    known = sorted(NOTIFIERS)
    for name, where in routed_notifiers(settings).items():
        if name not in NOTIFIERS:
            top = "routes" if where.startswith("routes.") else ".".join(where.split(".")[:2])
            raise ConfigError(
                f"settings: key {top!r}: unknown notifier {name!r} at {where} "
                f"(known: {', '.join(known)})"
            )


def build_notifiers(settings: Settings) -> dict[str, Notifier]:
    """The configured notifiers that routes name (no I/O: clients are created on first send)."""
    validate_routes(settings)
    built: dict[str, Notifier] = {}
    for name in routed_notifiers(settings):
        notifier = NOTIFIERS[name](settings)
        if notifier is not None:
            built[name] = notifier
    return built


Sleep = Callable[[float], Awaitable[None]]


class Dispatcher:
    """Routes, paces, retries and records notification deliveries.

    Parameters
    ----------
    settings
        Routes, fleet routes, rate limits and ``notify_max_backoff_s``.
    notifiers
        Destination name -> notifier; routed names missing here are skipped (one warning).
    log
        The delivery log (idempotency across crashes and replays).
    metrics
        Prometheus metrics (a private registry by default).
    initial_backoff_s
        First retry delay before jitter; doubles per attempt up to ``notify_max_backoff_s``.
    rates
        Destination name -> rate; by default each notifier's own
        :meth:`~agentwatch.alerting.notifiers.Notifier.rate`. Destinations without one are
        not paced.
    firing
        What refreshing destinations hold firing (a dict by default; a faust table in the
        worker, so a restart keeps refreshing).
    rng, clock, sleep
        Injected randomness and time, for tests.

    Raises
    ------
    ConfigError
        if a route names a notifier that is not registered in ``NOTIFIERS``.
    """

    def __init__(
        self,
        settings: Settings,
        notifiers: Mapping[str, Notifier],
        log: DeliveryLog,
        *,
        metrics: NotificationMetrics | None = None,
        initial_backoff_s: float = 1.0,
        rates: Mapping[str, Rate] | None = None,
        firing: FiringStore | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        validate_routes(settings)
        self.settings = settings
        self.notifiers = dict(notifiers)
        self.log = log
        self.metrics = metrics if metrics is not None else NotificationMetrics()
        self.initial_backoff_s = initial_backoff_s
        if rates is None:
            owned = ((name, n.rate()) for name, n in self.notifiers.items())
            rates = {name: rate for name, rate in owned if rate is not None}
        self.rates = dict(rates)
        self.firing = firing if firing is not None else FiringStore()
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[str, TokenBucket] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._waiting: dict[str, int] = {}  # destination -> deliveries in backoff/rate limit
        self._posting: dict[str, asyncio.Lock] = {}  # refreshing destination -> one post at once
        self._next_refresh: dict[str, float] = {}
        self.unconfigured = frozenset(
            name for name in routed_notifiers(settings) if name not in self.notifiers
        )
        for name in sorted(self.unconfigured):
            logger.warning(
                "routes name notifier %r but it is not configured; notifications routed to it "
                "are skipped",
                name,
            )

    @classmethod
    def from_settings(cls, settings: Settings, log: DeliveryLog, **kwargs: Any) -> Dispatcher:
        """A dispatcher with the notifiers that ``settings`` configures (no I/O)."""
        return cls(settings, build_notifiers(settings), log, **kwargs)

    def destinations(self, severity: Severity, fleet: str) -> tuple[str, ...]:
        """Destinations for ``severity`` in ``fleet``: the fleet's override, else ``routes``.

        A fleet override replaces the routes of the severities it names and inherits the
        others.
        """
        fleet_routes = self.settings.fleet_routes.get(fleet, {})
        names = fleet_routes.get(severity, self.settings.routes.get(severity, []))
        return tuple(dict.fromkeys(names))

    async def deliver(self, notification: Notification) -> DeliveryResult:
        """Deliver ``notification`` to every destination it routes to, concurrently.

        Returns once every destination has accepted it, had it already, or rejected it; while
        a destination keeps failing with retryable errors this keeps retrying (cancel it to
        stop, e.g. at shutdown: nothing is recorded for an unfinished destination).
        """
        routed = self.destinations(notification.severity, notification.fleet)
        configured = [d for d in routed if d in self.notifiers]
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._deliver_to(d, notification)) for d in configured]
        return DeliveryResult(
            notification_id=notification.notification_id,
            outcomes=tuple(t.result() for t in tasks),
            unconfigured=tuple(d for d in routed if d not in self.notifiers),
        )

    def waiting_on(self) -> list[str]:
        """Destinations a delivery is waiting for right now (retry backoff or rate limit).

        Readiness reads it: a notifier held up by PagerDuty or Slack being down is delayed,
        not stuck, and must not take the worker (and its control API) out of service.
        """
        return sorted(d for d, n in self._waiting.items() if n > 0)

    def refreshing(self) -> dict[str, RefreshingNotifier]:
        """The configured destinations whose service must be sent firing alerts again."""
        return {
            name: notifier
            for name, notifier in self.notifiers.items()
            if isinstance(notifier, RefreshingNotifier)
        }

    async def refresh_due(self) -> dict[str, str]:
        """Post again, to every refreshing destination whose resend interval is up, each
        incident it holds firing (and still routes to it). Returns destination -> ``ok``
        or ``failed``, for the destinations it tried.

        A failure is logged and counted and tried again a quarter interval later (the alerts
        were posted with an ``endsAt`` four intervals ahead, so a short outage resolves
        nothing). Call it only on the worker that owns the outbox (it reads the firing store).
        """
        done: dict[str, str] = {}
        for name, notifier in self.refreshing().items():
            now = self._clock()
            if now < self._next_refresh.get(name, float("-inf")):
                continue
            interval = notifier.resend_interval_s
            result = await self._refresh(name, notifier)
            self._next_refresh[name] = self._clock() + (
                interval if result == "ok" else interval / 4.0
            )
            done[name] = result
        return done

    async def _refresh(self, name: str, notifier: RefreshingNotifier) -> str:
        async with self._posting_lock(name):
            firing = [
                record
                for record in self.firing.firing(name)
                if name
                in self.destinations(record.notification.severity, record.notification.fleet)
            ]
            self.metrics.firing.labels(name).set(len(firing))
            if not firing:
                return "ok"
            bucket = self._bucket(name)
            if bucket is not None:
                await bucket.acquire()
            try:
                await notifier.refresh(firing)
            except DeliveryError as exc:
                self.metrics.refreshes.labels(name, "failed").inc()
                logger.warning(
                    "%s: refreshing %d firing incident(s) failed (%s); trying again shortly",
                    name,
                    len(firing),
                    exc,
                )
                return "failed"
            except Exception:
                self.metrics.refreshes.labels(name, "failed").inc()
                logger.exception("%s: refreshing firing incidents failed", name)
                return "failed"
        self.metrics.refreshes.labels(name, "ok").inc()
        return "ok"

    def _posting_lock(self, destination: str) -> asyncio.Lock:
        lock = self._posting.get(destination)
        if lock is None:
            lock = self._posting[destination] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def _held_by(self, destination: str) -> AsyncIterator[None]:
        self._waiting[destination] = self._waiting.get(destination, 0) + 1
        try:
            yield
        finally:
            self._waiting[destination] -= 1

    async def aclose(self) -> None:
        """Close every notifier's client."""
        for notifier in self.notifiers.values():
            try:
                await notifier.aclose()
            except Exception:
                logger.exception("closing notifier %r failed", notifier.name)

    # -- internals ---------------------------------------------------------------------
    @asynccontextmanager
    async def _exclusive(self, key: str) -> AsyncIterator[None]:
        """One delivery per key at a time (a concurrent replay waits, then sees the record)."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def _bucket(self, destination: str) -> TokenBucket | None:
        rate = self.rates.get(destination)
        if rate is None:
            return None
        bucket = self._buckets.get(destination)
        if bucket is None:
            bucket = self._buckets[destination] = TokenBucket(
                rate, clock=self._clock, sleep=self._sleep
            )
        return bucket

    async def _deliver_to(self, destination: str, notification: Notification) -> DestinationOutcome:
        key = delivery_key(destination, notification.notification_id)
        async with self._exclusive(key):
            if self.log.delivered(key):
                self.metrics.skipped.labels(destination).inc()
                return DestinationOutcome(destination, "skipped")
            pending = self.metrics.pending.labels(destination)
            pending.inc()
            try:
                return await self._send_until_done(destination, key, notification)
            finally:
                pending.dec()

    async def _attempt(
        self, destination: str, notifier: Notifier, notification: Notification
    ) -> None:
        """One delivery attempt; a refreshing destination's firing record follows it."""
        if not isinstance(notifier, RefreshingNotifier):
            await notifier.send(notification)
            return
        async with self._posting_lock(destination):
            incident = notification.incident_id
            firing = merge_firing(self.firing.get(destination, incident), notification)
            await notifier.send_firing(notification, firing)
            try:
                if notification.event == "resolve":
                    self.firing.delete(destination, incident)
                else:
                    self.firing.put(destination, firing)
            except Exception:
                logger.exception(
                    "%s: recording incident %s as %s failed; it may be refreshed wrongly",
                    destination,
                    incident,
                    "resolved" if notification.event == "resolve" else "firing",
                )

    async def _send_until_done(
        self, destination: str, key: str, notification: Notification
    ) -> DestinationOutcome:
        notifier = self.notifiers[destination]
        bucket = self._bucket(destination)
        started = self._clock()
        attempt = 0
        while True:
            if bucket is not None:
                async with self._held_by(destination):
                    await bucket.acquire()
            attempt += 1
            try:
                await self._attempt(destination, notifier, notification)
            except DeliveryError as exc:
                self.metrics.failures.labels(destination, exc.reason).inc()
                if not exc.retryable:
                    logger.error(
                        "%s rejected notification %s (not retried): %s",
                        destination,
                        notification.notification_id,
                        exc,
                    )
                    return DestinationOutcome(destination, "failed", attempt, str(exc), exc.reason)
                delay = backoff_delay(
                    attempt,
                    initial=self.initial_backoff_s,
                    cap=self.settings.notify_max_backoff_s,
                    retry_after=exc.retry_after,
                    rng=self._rng,
                )
                level = logging.WARNING if attempt & (attempt - 1) == 0 else logging.DEBUG
                logger.log(
                    level,
                    "%s: notification %s attempt %d failed (%s); retrying in %.2fs",
                    destination,
                    notification.notification_id,
                    attempt,
                    exc,
                    delay,
                )
                async with self._held_by(destination):
                    await self._sleep(delay)
                continue
            except Exception as exc:
                self.metrics.failures.labels(destination, "internal").inc()
                logger.exception(
                    "%s: notifier failed on notification %s (not retried)",
                    destination,
                    notification.notification_id,
                )
                return DestinationOutcome(
                    destination,
                    "failed",
                    attempt,
                    f"internal error: {type(exc).__name__}",
                    "internal",
                )
            break
        try:
            self.log.record(key)
        except Exception:
            logger.exception("recording delivery %s failed; a replay may send it again", key)
        self.metrics.sent.labels(destination, notification.event).inc()
        self.metrics.delivery_seconds.labels(destination).observe(max(0.0, self._clock() - started))
        if attempt > 1:
            logger.info(
                "%s: notification %s delivered after %d attempts",
                destination,
                notification.notification_id,
                attempt,
            )
        return DestinationOutcome(destination, "sent", attempt)
