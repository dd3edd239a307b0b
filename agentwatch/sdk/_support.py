"""Helpers the SDK's modules share: field types, text clipping, backoff, warnings, counters."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import ValidationError

__all__ = [
    "KINDS",
    "RISKS",
    "STATUSES",
    "WARN_INTERVAL_S",
    "Backoff",
    "Counters",
    "Kind",
    "RateLimited",
    "Risk",
    "Status",
    "clip",
    "describe_error",
    "stop_client",
    "validation_reason",
]

log = logging.getLogger("agentwatch.sdk")

Kind = Literal["tool", "llm", "api", "other"]
Status = Literal["ok", "error", "denied"]
Risk = Literal["low", "medium", "high", "critical"]

RISKS: frozenset[str] = frozenset({"low", "medium", "high", "critical"})
KINDS: frozenset[str] = frozenset({"tool", "llm", "api", "other"})
STATUSES: frozenset[str] = frozenset({"ok", "error", "denied"})
WARN_INTERVAL_S = 10.0
"""At most one warning per this many seconds for each kind of trouble (drops, send errors)."""


def clip(value: object, limit: int) -> str | None:
    """``value`` as text of at most ``limit`` characters (``None`` stays ``None``).

    Examples
    --------
    >>> clip("abcdef", 4), clip(12, 5), clip(None, 3)
    ('abc…', '12', None)
    """
    if value is None:
        return None
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:  # a __str__ that raises
        text = f"<unprintable {type(value).__name__}>"
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def describe_error(exc: BaseException, limit: int, detail: bool) -> str:
    """``Type: message`` of an exception (only ``Type`` when not ``detail``), clipped.

    Examples
    --------
    >>> describe_error(ValueError("bad path"), 100, True), describe_error(KeyError(), 100, False)
    ('ValueError: bad path', 'KeyError')
    """
    name = type(exc).__name__
    if not detail:
        return name
    try:
        message = str(exc)
    except Exception:
        message = ""
    return clip(f"{name}: {message}" if message else name, limit) or name


def validation_reason(exc: ValidationError) -> str:
    """A short reason without the offending input (it might hold a secret)."""
    errors = exc.errors(include_url=False, include_input=False)
    if not errors:
        return "invalid"
    first = errors[0]
    loc = ".".join(str(p) for p in first["loc"]) or "value"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{loc}: {first['msg']}{more}"


class Backoff:
    """Exponential delays from ``first`` doubling up to ``cap``; :meth:`reset` after success.

    Examples
    --------
    >>> b = Backoff(0.1, 0.3)
    >>> [b.next() for _ in range(4)]
    [0.1, 0.2, 0.3, 0.3]
    """

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.current = first

    def next(self) -> float:
        """The delay to wait now."""
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        """Start again from ``first``."""
        self.current = self.first


class RateLimited:
    """Logs one warning per ``interval`` per topic, with a count of what happened meanwhile."""

    def __init__(self, interval: float = WARN_INTERVAL_S, logger: logging.Logger = log) -> None:
        self.interval = interval
        self.logger = logger
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._lock = threading.Lock()

    def warning(self, topic: str, msg: str, *args: object) -> None:
        """Log ``msg % args`` unless a warning on ``topic`` was logged within ``interval``."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(topic)
            if last is not None and now - last < self.interval:
                self._suppressed[topic] = self._suppressed.get(topic, 0) + 1
                return
            self._last[topic] = now
            suppressed = self._suppressed.pop(topic, 0)
        if suppressed:
            msg += " (%d similar warnings suppressed)"
            args = (*args, suppressed)
        self.logger.warning(msg, *args)


class Counters:
    """Named integer counters, safe to bump from any thread.

    Examples
    --------
    >>> c = Counters(["sent", "dropped"])
    >>> c.add("sent", 3); c.add("dropped")
    >>> c.snapshot()
    {'sent': 3, 'dropped': 1}
    """

    def __init__(self, names: Iterable[str]) -> None:
        self._values = dict.fromkeys(names, 0)
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        """Add ``n`` to the counter ``name`` (it must be one of the names given)."""
        with self._lock:
            self._values[name] += n

    def get(self, name: str) -> int:
        """The current value of ``name``."""
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter."""
        with self._lock:
            return dict(self._values)


async def stop_client(client: Any, limit_s: float) -> None:
    """Stop an aiokafka client within ``limit_s`` seconds; a failure is only logged (debug)."""
    try:
        await asyncio.wait_for(client.stop(), limit_s)
    except BaseException as exc:
        log.debug("agentwatch: stopping a Kafka client failed: %r", exc)
        if isinstance(exc, asyncio.CancelledError):
            raise
