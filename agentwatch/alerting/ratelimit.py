"""Async token buckets that pace deliveries to each service: excess waits, nothing is dropped.

Each notifier knows its service's limit (:meth:`~agentwatch.alerting.notifiers.Notifier.rate`,
from its own settings): PagerDuty throttles the Events API per routing key
(``pagerduty_events_per_minute``, about 120/min), Slack allows about one incoming-webhook
message per second (``slack_messages_per_second``), Alertmanager and the signed webhook take
``requests_per_second`` from their sections. One bucket per destination keeps each under it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Rate", "TokenBucket"]

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Rate:
    """A sustained rate (tokens per second) and the burst a full bucket allows."""

    per_second: float
    burst: float = 1.0

    def __post_init__(self) -> None:
        if not self.per_second > 0:
            raise ValueError("per_second must be positive")
        if not self.burst >= 1:
            raise ValueError("burst must be at least 1")


class TokenBucket:
    """A token bucket whose :meth:`acquire` waits for a token (first come, first served).

    Parameters
    ----------
    rate
        Refill rate and capacity.
    clock
        Monotonic seconds (injected in tests).
    sleep
        Async sleep (injected in tests).

    Examples
    --------
    >>> import asyncio
    >>> bucket = TokenBucket(Rate(per_second=1000.0, burst=2))
    >>> asyncio.run(bucket.acquire())
    """

    def __init__(
        self,
        rate: Rate,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = rate.burst
        self._updated: float | None = None
        self._lock: asyncio.Lock | None = None

    def _refill(self) -> None:
        now = self._clock()
        if self._updated is not None:
            elapsed = max(0.0, now - self._updated)
            self._tokens = min(self.rate.burst, self._tokens + elapsed * self.rate.per_second)
        self._updated = now

    @property
    def available(self) -> float:
        """Tokens available now (refills first)."""
        self._refill()
        return self._tokens

    async def acquire(self) -> None:
        """Take one token, waiting until one is available; waiters are served in order."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._refill()
            while self._tokens < 1.0:
                await self._sleep((1.0 - self._tokens) / self.rate.per_second)
                self._refill()
            self._tokens -= 1.0
