"""The notifier extension point: one ``send`` per notification, errors say whether to retry."""

from __future__ import annotations

import email.utils
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from agentwatch.alerting.firing import FiringIncident, merge_firing
from agentwatch.alerting.ratelimit import Rate
from agentwatch.config import Settings
from agentwatch.schemas import Notification

__all__ = [
    "NOTIFIERS",
    "DeliveryError",
    "Notifier",
    "RefreshingNotifier",
    "parse_retry_after",
    "redact",
    "register_notifier",
    "status_error",
    "truncate",
]

ELLIPSIS = "…"


class DeliveryError(Exception):
    """A notification could not be delivered.

    ``retryable`` errors (timeouts, connection errors, HTTP 429 and 5xx) are retried with
    backoff until they succeed; ``retry_after`` is the service's hint in seconds (HTTP
    ``Retry-After``) when it gave one. Non-retryable errors (the service rejected the payload)
    are recorded on the audit topic and counted, never retried forever. The message never
    contains a secret (routing key, webhook URL).

    ``reason`` is a short, bounded label for metrics: ``rate_limited``, ``server_error``,
    ``timeout``, ``connection``, ``rejected`` or ``error``.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.reason = reason or ("error" if retryable else "rejected")


class Notifier(ABC):
    """Delivers notifications to one service. Constructors store settings only (no I/O)."""

    #: The name routes refer to (``settings.routes``).
    name: ClassVar[str]

    @abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver one notification, or raise :class:`DeliveryError`."""

    def rate(self) -> Rate | None:
        """The service's rate limit, from the notifier's own settings (``None``: unpaced).

        The dispatcher paces every post to this destination (deliveries and refreshes) with a
        token bucket of this rate: excess waits, nothing is dropped.
        """
        return None

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients (optional)."""


class RefreshingNotifier(Notifier):
    """A notifier whose service forgets a firing alert unless it is posted again (Alertmanager).

    The dispatcher hands it the whole :class:`~agentwatch.alerting.firing.FiringIncident` (every
    rule that fired in the incident, not only the top five a notification carries) on each
    delivery, records what it accepted, and calls :meth:`refresh` with every incident still
    firing there every :attr:`resend_interval_s`. A delivery and a refresh to one destination
    never overlap, so a refresh cannot land after the resolve it raced with.
    """

    #: How often the dispatcher calls :meth:`refresh` (seconds).
    resend_interval_s: float

    @abstractmethod
    async def send_firing(self, notification: Notification, firing: FiringIncident) -> None:
        """Deliver ``notification`` about ``firing`` (its rules, merged), or raise
        :class:`DeliveryError`."""

    @abstractmethod
    async def refresh(self, firing: Sequence[FiringIncident]) -> None:
        """Post every incident in ``firing`` again as still firing, or raise
        :class:`DeliveryError`."""

    async def send(self, notification: Notification) -> None:
        """Deliver ``notification`` on its own (no earlier state: its top anomalies only)."""
        await self.send_firing(notification, merge_firing(None, notification))


#: name -> factory building the notifier from settings; ``None`` if it is not configured.
NOTIFIERS: dict[str, Callable[[Settings], Notifier | None]] = {}


def register_notifier(
    name: str,
) -> Callable[[Callable[[Settings], Notifier | None]], Callable[[Settings], Notifier | None]]:
    """Register a notifier factory under ``name`` (plugins resolve by name)."""

    def deco(
        factory: Callable[[Settings], Notifier | None],
    ) -> Callable[[Settings], Notifier | None]:
        NOTIFIERS[name] = factory
        return factory

    return deco


def truncate(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when it was cut.

    Cuts on code points (never inside a UTF-16 surrogate pair or an escape), so the result is
    always valid text of at most ``limit`` characters.

    Examples
    --------
    >>> truncate("cost spike", 20), truncate("cost spike", 6)
    ('cost spike', 'cost…')
    """
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: limit - len(ELLIPSIS)].rstrip() + ELLIPSIS


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``***``.

    Examples
    --------
    >>> redact("bad key abc123", ["abc123"])
    'bad key ***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from an HTTP ``Retry-After`` value (delta-seconds or HTTP-date).

    Examples
    --------
    >>> parse_retry_after("3"), parse_retry_after(None), parse_retry_after("soon")
    (3.0, None, None)
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        current = time.time() if now is None else now
        seconds = when.timestamp() - current
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def status_error(
    service: str, status: int, detail: str, *, retry_after: float | None, refused: str
) -> DeliveryError:
    """The :class:`DeliveryError` for a non-2xx HTTP answer of ``service``.

    429 is throttling and 408 or 5xx a failure (both retried, after ``retry_after`` when the
    service gave one); any other status is a refusal, not retried. ``detail`` (the answer's
    text) must already be redacted; ``refused`` says what was refused.

    Examples
    --------
    >>> e = status_error("Slack", 503, "busy", retry_after=2.0, refused="the message")
    >>> str(e), e.retryable, e.reason
    ('Slack failed (HTTP 503): busy', True, 'server_error')
    >>> status_error("Slack", 404, "no_service", retry_after=None, refused="the message").reason
    'rejected'
    """
    if status == 429:
        return DeliveryError(
            f"{service} throttled the request (HTTP 429)",
            retryable=True,
            retry_after=retry_after,
            reason="rate_limited",
        )
    if status >= 500 or status == 408:
        return DeliveryError(
            f"{service} failed (HTTP {status}): {detail}",
            retryable=True,
            retry_after=retry_after,
            reason="server_error",
        )
    return DeliveryError(
        f"{service} rejected {refused} (HTTP {status}): {detail}",
        retryable=False,
        reason="rejected",
    )
